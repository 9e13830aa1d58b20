"""SGLang's server command line (`python -m sglang.launch_server`), built from one engine x
quantization config. Flag names were checked against SGLang 0.5.9 (``srt/server_args.py``).
"""

from __future__ import annotations

from quantbench.engines.launch import (
    COMMON_KEYS,
    PORT_PLACEHOLDER,
    LaunchSpec,
    check_settings,
    opt,
)

SGLANG_KEYS = frozenset(
    COMMON_KEYS | {"context_length", "max_model_len", "mem_fraction_static", "mixed_chunk"}
)


def sglang_launch(
    model_dir: str,
    served_model_name: str,
    settings: dict,
    *,
    host: str = "127.0.0.1",
    python: str = "python",
) -> LaunchSpec:
    s = check_settings("sglang", settings, SGLANG_KEYS)
    context = s.get("context_length")
    if "max_model_len" in s:
        if context is not None and context != s["max_model_len"]:
            raise ValueError(
                f"sglang: max_model_len={s['max_model_len']} disagrees with "
                f"context_length={context}; give one"
            )
        context = s["max_model_len"]
    cmd = [
        python,
        "-m",
        "sglang.launch_server",
        "--model-path",
        str(model_dir),
        "--host",
        host,
        "--port",
        PORT_PLACEHOLDER,
        "--served-model-name",
        served_model_name,
    ]
    cmd += opt("--dtype", s.get("dtype"))
    cmd += opt("--context-length", context)
    cmd += opt("--mem-fraction-static", s.get("mem_fraction_static"))
    cmd += opt("--tp-size", s.get("tensor_parallel_size"))
    cmd += opt("--ep-size", s.get("expert_parallel_size"))
    cmd += opt("--quantization", s.get("quantization"))
    cmd += opt("--load-format", s.get("load_format"))
    if s.get("chunked_prefill") is False:  # SGLang chunks prefill by default; -1 turns it off
        cmd += ["--chunked-prefill-size", "-1"]
    if s.get("mixed_chunk"):
        cmd.append("--enable-mixed-chunk")
    if s.get("skip_tokenizer_init"):
        cmd.append("--skip-tokenizer-init")
    cmd += opt("--tokenizer-path", s.get("tokenizer"))
    if s.get("prefix_caching") is False:  # the radix cache is on by default
        cmd.append("--disable-radix-cache")
    if s.get("cache_report"):  # usage.prompt_tokens_details.cached_tokens, when above 0
        cmd.append("--enable-cache-report")
    cmd.append("--enable-metrics")  # Prometheus /metrics, which the sweep scenario scrapes
    cmd += list(s.get("extra_args", []))
    return LaunchSpec("sglang", cmd, dict(s.get("env", {})))
