"""CLI: ``python -m quantbench.client --base-url URL --model M --num-prompts 64 ...``.

Prints the metrics as JSON; ``--raw-out`` keeps every request's timestamps (JSONL) and
``--summary-out`` the metrics plus the client's own CPU time for the measured phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np

from quantbench.client.prompts import make_prompt_ids
from quantbench.client.stream import loop_factory, run_load
from quantbench.metrics import compute_metrics


def _prompts(a) -> list:
    if a.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(a.tokenizer)
        ids = [make_prompt_ids(tok, a.input_len, a.seed + i) for i in range(a.num_prompts)]
        return [tok.decode(x) for x in ids] if a.endpoint == "chat" else ids
    # No tokenizer: printable-ASCII ids, which are bytes for the refserver's byte tokenizer.
    rng = np.random.default_rng(a.seed)
    ids = rng.integers(32, 127, size=(a.num_prompts, a.input_len)).tolist()
    return [bytes(x).decode() for x in ids] if a.endpoint == "chat" else ids


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m quantbench.client")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--endpoint", choices=("completions", "chat"), default="completions")
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--tokenizer", default=None, help="HF tokenizer name/path for exact prompts")
    ap.add_argument("--concurrency", type=int, default=None)
    ap.add_argument("--request-rate", type=float, default=float("inf"))
    ap.add_argument("--burstiness", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--ramp-s", type=float, default=0.0)
    ap.add_argument("--timeout-s", type=float, default=600.0)
    ap.add_argument("--id-prefix", default="qb")
    ap.add_argument("--extra-body", default=None, help="JSON merged into every request body")
    ap.add_argument("--slo-ms", default=None, help='JSON, e.g. {"ttft": 200, "tpot": 50}')
    ap.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="auto: asyncio's (kernel receive stamps) on Linux, else uvloop if installed",
    )
    ap.add_argument("--raw-out", default=None)
    ap.add_argument("--summary-out", default=None)
    a = ap.parse_args(argv)
    prompts = _prompts(a)
    factory = loop_factory(a.loop)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with asyncio.Runner(loop_factory=factory) as runner:
        records = runner.run(
            run_load(
                a.base_url,
                a.model,
                prompts,
                a.output_len,
                endpoint=a.endpoint,
                concurrency=a.concurrency,
                request_rate=a.request_rate,
                burstiness=a.burstiness,
                seed=a.seed,
                warmup=a.warmup,
                timeout_s=a.timeout_s,
                ramp_s=a.ramp_s,
                extra_body=json.loads(a.extra_body) if a.extra_body else None,
                expected_prompt_tokens=None if a.endpoint == "chat" else a.input_len,
                id_prefix=a.id_prefix,
                raw_path=a.raw_out,
            )
        )
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    m = compute_metrics(records, slo_ms=json.loads(a.slo_ms) if a.slo_ms else None)
    summary = {
        **m.as_dict(),
        "client_cpu_s": cpu,
        "client_wall_s": wall,
        "event_loop": "uvloop" if factory else "asyncio",
        "stamp_sources": sorted({r.stamp_source for r in records}),
        "prompt_mismatches": sum(r.prompt_mismatch for r in records),
        "output_mismatches": sum(r.output_mismatch for r in records),
        "errors": sorted({r.error for r in records if r.error})[:5],
    }
    if a.summary_out:
        with open(a.summary_out, "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
