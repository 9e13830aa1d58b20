"""vLLM's server command line (`vllm serve`), built from one engine x quantization config.

Flag names were checked against the argument parsers of vLLM 0.24.0
(``engine/arg_utils.py``, ``entrypoints/openai/cli_args.py``).
"""

from __future__ import annotations

from quantbench.engines.launch import (
    COMMON_KEYS,
    PORT_PLACEHOLDER,
    LaunchSpec,
    check_settings,
    opt,
)

VLLM_KEYS = frozenset(
    COMMON_KEYS | {"max_model_len", "gpu_memory_utilization", "cpu_kvcache_space_gib"}
)

# vLLM sizes the CPU KV cache from free RSS when this is unset, which varies run to run; its old
# fixed default (4 GiB) keeps CPU runs comparable.
DEFAULT_CPU_KVCACHE_SPACE_GIB = 4


def vllm_launch(
    model_dir: str,
    served_model_name: str,
    settings: dict,
    *,
    device: str = "cuda",
    host: str = "127.0.0.1",
    exe: str = "vllm",
) -> LaunchSpec:
    s = check_settings("vllm", settings, VLLM_KEYS)
    tp = s.get("tensor_parallel_size")
    ep = s.get("expert_parallel_size")
    if ep is not None and ep > 1 and ep != (tp or 1):
        # vLLM has no EP-size flag: with --enable-expert-parallel, EP = TP x DP.
        raise ValueError(
            f"vllm cannot set expert_parallel_size={ep} apart from "
            f"tensor_parallel_size={tp}; EP size is TP x DP when enabled"
        )
    cmd = [
        exe,
        "serve",
        str(model_dir),
        "--host",
        host,
        "--port",
        PORT_PLACEHOLDER,
        "--served-model-name",
        served_model_name,
    ]
    cmd += opt("--dtype", s.get("dtype"))
    cmd += opt("--max-model-len", s.get("max_model_len"))
    cmd += opt("--gpu-memory-utilization", s.get("gpu_memory_utilization"))
    cmd += opt("--tensor-parallel-size", tp)
    if ep is not None and ep > 1:
        cmd.append("--enable-expert-parallel")
    cmd += opt("--quantization", s.get("quantization"))
    cmd += opt("--load-format", s.get("load_format"))
    if "chunked_prefill" in s:  # a BooleanOptionalAction in vLLM: both states are explicit
        cmd.append(
            "--enable-chunked-prefill" if s["chunked_prefill"] else "--no-enable-chunked-prefill"
        )
    cmd += opt("--tokenizer", s.get("tokenizer"))
    if s.get("skip_tokenizer_init"):
        cmd.append("--skip-tokenizer-init")
    if "prefix_caching" in s:  # on by default in vLLM
        cmd.append(
            "--enable-prefix-caching" if s["prefix_caching"] else "--no-enable-prefix-caching"
        )
    if s.get("cache_report"):  # usage.prompt_tokens_details.cached_tokens on every request
        cmd.append("--enable-prompt-tokens-details")
    cmd += list(s.get("extra_args", []))

    # FlashInfer's sampler is JIT-built on first use and absent on some wheels; the PyTorch
    # sampler keeps start-up and sampling cost the same for every quantization.
    env = {"VLLM_USE_FLASHINFER_SAMPLER": "0", **s.get("env", {})}
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(
            s.get("cpu_kvcache_space_gib", DEFAULT_CPU_KVCACHE_SPACE_GIB)
        )
    elif "cpu_kvcache_space_gib" in s:
        raise ValueError("vllm setting 'cpu_kvcache_space_gib' applies only to device='cpu'")
    return LaunchSpec("vllm", cmd, env)
