"""The engines' own benchmark clients (``vllm bench serve``, SGLang's ``bench_serving``), run on
the server the workflow started, with the same workload as the project's client, so the two
read side by side. Their figures are mapped onto this project's metric names (metrics.py) —
the definitions match vLLM's, which both tools follow."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# Our name -> the key in the tool's result file, per tool. SGLang calls e2e latency
# "e2e_latency", vLLM "e2el"; both write p99 and median, and take mean as "mean_*".
_STATS = ("mean", "median", "p99")
VLLM_KEYS = {
    **{f"{m}_{s}_ms": f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el") for s in _STATS},
    "request_throughput": "request_throughput",
    "output_throughput": "output_throughput",
    "completed": "completed",
    "duration_s": "duration",
    "total_output_tokens": "total_output_tokens",
}
SGLANG_KEYS = {
    **VLLM_KEYS,
    **{f"e2el_{s}_ms": f"{s}_e2e_latency_ms" for s in _STATS},
}


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


def vllm_command(exe: str, url: str, model: str, tokenizer: str, w: Workload, out: Path) -> list:
    cmd = [exe, "bench", "serve", "--backend", "vllm", "--endpoint", "/v1/completions"]
    cmd += ["--base-url", url, "--model", tokenizer, "--served-model-name", model]
    cmd += ["--tokenizer", tokenizer, "--dataset-name", "random", "--random-range-ratio", "0"]
    cmd += ["--random-input-len", str(w.input_len), "--random-output-len", str(w.output_len)]
    cmd += ["--num-prompts", str(w.num_prompts), "--ignore-eos", "--seed", str(w.seed)]
    # Greedy, as our client and sglang.bench_serving ask (vllm bench serve leaves it to the server).
    cmd += ["--temperature", "0"]
    cmd += ["--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99"]
    cmd += ["--save-result", "--result-dir", str(out.parent), "--result-filename", out.name]
    cmd += ["--disable-tqdm", "--request-rate", str(w.request_rate or "inf")]
    if w.max_concurrency:
        cmd += ["--max-concurrency", str(w.max_concurrency)]
    return cmd


def sglang_command(py: str, url: str, model: str, tokenizer: str, w: Workload, out: Path) -> list:
    # sglang-oai streams /v1/completions like our client; `random-ids` needs no ShareGPT
    # download; its range ratio is the lower bound's share, so 1.0 means fixed lengths.
    cmd = [py, "-m", "sglang.bench_serving", "--backend", "sglang-oai", "--base-url", url]
    cmd += ["--model", tokenizer, "--served-model-name", model, "--tokenizer", tokenizer]
    cmd += ["--dataset-name", "random-ids", "--random-range-ratio", "1.0"]
    cmd += ["--random-input-len", str(w.input_len), "--random-output-len", str(w.output_len)]
    cmd += ["--num-prompts", str(w.num_prompts), "--seed", str(w.seed), "--disable-tqdm"]
    cmd += ["--output-file", str(out), "--request-rate", str(w.request_rate or "inf")]
    if w.max_concurrency:
        cmd += ["--max-concurrency", str(w.max_concurrency)]
    return cmd


class Tool(NamedTuple):
    name: str
    command: Callable[..., list]  # (executable, url, model, tokenizer, workload, result path)
    keys: dict[str, str]  # our metric name -> the key in its result file


TOOLS = {
    "vllm": Tool("vllm bench serve", vllm_command, VLLM_KEYS),
    "sglang": Tool("sglang.bench_serving", sglang_command, SGLANG_KEYS),
}


def read_result(engine: str, path: Path) -> dict:
    """The tool's figures under our names (vLLM: one JSON object; SGLang: JSONL, last line)."""
    text = path.read_text().strip()
    doc = json.loads(text.splitlines()[-1] if engine == "sglang" else text)
    return {ours: doc.get(theirs) for ours, theirs in TOOLS[engine].keys.items()}


def run_own_client(
    engine: str, exe: str, url: str, model: str, tokenizer: str, w: Workload, work: Path
) -> dict:
    """Run the engine's tool to completion (its output kept in a log beside the server's);
    its figures, or a RuntimeError with the log's tail."""
    name = TOOLS[engine].name
    out = work / f"{engine}-own-client-result.json"
    log_path = work / f"{engine}-own-client.log"
    out.unlink(missing_ok=True)
    cmd = TOOLS[engine].command(exe, url, model, tokenizer, w, out)
    with open(log_path, "w") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False, cwd=work)
    if proc.returncode or not out.exists():
        tail = "".join(log_path.read_text(errors="replace").splitlines(True)[-15:])
        raise RuntimeError(f"{name} exited {proc.returncode}, no result ({log_path}):\n{tail}")
    return {"client": name, **read_result(engine, out)}
