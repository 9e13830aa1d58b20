"""SGLang's own benchmark client, `python -m sglang.bench_serving`, against the server the
workflow started. Its keys are vLLM's but for e2e latency ("e2e_latency", vLLM "e2el")."""

from __future__ import annotations

from pathlib import Path

from quantbench.engines.own_client import STATS, Tool, Workload
from quantbench.engines.vllm.client import RESULT_KEYS as VLLM_RESULT_KEYS

RESULT_KEYS = {
    **VLLM_RESULT_KEYS,
    **{f"e2el_{s}_ms": f"{s}_e2e_latency_ms" for s in STATS},
}


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


TOOL = Tool("sglang.bench_serving", sglang_command, RESULT_KEYS, jsonl=True)
