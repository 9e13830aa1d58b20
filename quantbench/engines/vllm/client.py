"""vLLM's own benchmark client, `vllm bench serve`, against the server the workflow started."""

from __future__ import annotations

from pathlib import Path

from quantbench.engines.own_client import STATS, Tool, Workload

# Our name -> the key in the tool's result file.
RESULT_KEYS = {
    **{f"{m}_{s}_ms": f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el") for s in STATS},
    "request_throughput": "request_throughput",
    "output_throughput": "output_throughput",
    "completed": "completed",
    "duration_s": "duration",
    "total_output_tokens": "total_output_tokens",
}

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


TOOL = Tool("vllm bench serve", vllm_command, RESULT_KEYS)
