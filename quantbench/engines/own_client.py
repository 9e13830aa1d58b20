"""The engines' own benchmark clients (``vllm bench serve``, SGLang's ``bench_serving``), run on
the server the workflow started, with the same workload as the project's client, so the two
read side by side. Each engine package declares its tool (`own_client_tool`: its command line
and its result keys); their figures are mapped onto this project's metric names (metrics.py) —
the definitions match vLLM's, which both tools follow."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# The statistics both tools write: mean as "mean_*", median and p99.
STATS = ("mean", "median", "p99")


@dataclass(frozen=True)
class Workload:
    """Fixed-length random prompts at a request rate and/or concurrency (the L40 shape by
    default: 200 prompts, 512 in, 128 out, 10 requests/s)."""

    input_len: int = 512
    output_len: int = 128
    num_prompts: int = 200
    request_rate: float | None = 10.0
    max_concurrency: int | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict) -> Workload:
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg})


class Tool(NamedTuple):
    name: str
    command: Callable[..., list]  # (executable, url, model, tokenizer, workload, result path)
    keys: dict[str, str]  # our metric name -> the key in its result file
    jsonl: bool = False  # the result file is JSON lines, the last one the run's


def tool_of(engine: str) -> Tool:
    from quantbench.engines import get_engine

    tool = get_engine(engine).own_client_tool
    if tool is None:
        raise ValueError(f"engine {engine!r} has no own benchmark client")
    return tool


def read_result(engine: str, path: Path) -> dict:
    """The tool's figures under our names (vLLM: one JSON object; SGLang: JSONL, last line)."""
    tool = tool_of(engine)
    text = path.read_text().strip()
    doc = json.loads(text.splitlines()[-1] if tool.jsonl else text)
    return {ours: doc.get(theirs) for ours, theirs in tool.keys.items()}


def run_own_client(
    engine: str, exe: str, url: str, model: str, tokenizer: str, w: Workload, work: Path
) -> dict:
    """Run the engine's tool to completion (its output kept in a log beside the server's);
    its figures, or a RuntimeError with the log's tail."""
    tool = tool_of(engine)
    name = tool.name
    out = work / f"{engine}-own-client-result.json"
    log_path = work / f"{engine}-own-client.log"
    out.unlink(missing_ok=True)
    cmd = tool.command(exe, url, model, tokenizer, w, out)
    with open(log_path, "w") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False, cwd=work)
    if proc.returncode or not out.exists():
        tail = "".join(log_path.read_text(errors="replace").splitlines(True)[-15:])
        raise RuntimeError(f"{name} exited {proc.returncode}, no result ({log_path}):\n{tail}")
    return {"client": name, **read_result(engine, out)}
