"""Server command lines for vLLM and SGLang, built from one engine x quantization config.

Flag names were checked against the argument parsers of vLLM 0.24.0
(``engine/arg_utils.py``, ``entrypoints/openai/cli_args.py``) and SGLang 0.5.9
(``srt/server_args.py``). The port is left as the placeholder ``{port}`` for
:class:`quantbench.engines.server.ManagedServer` to fill in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "PORT_PLACEHOLDER",
    "LaunchSpec",
    "build_launch",
    "cache_state",
    "sglang_launch",
    "vllm_launch",
]

PORT_PLACEHOLDER = "{port}"

_COMMON = {
    "dtype",
    "tensor_parallel_size",
    "expert_parallel_size",
    "quantization",
    "load_format",
    "chunked_prefill",
    "skip_tokenizer_init",
    "tokenizer",
    "extra_args",
    "env",
    "prefix_caching",
    "cache_report",
}
VLLM_KEYS = frozenset(
    _COMMON | {"max_model_len", "gpu_memory_utilization", "cpu_kvcache_space_gib"}
)
SGLANG_KEYS = frozenset(
    _COMMON | {"context_length", "max_model_len", "mem_fraction_static", "mixed_chunk"}
)
_BOOL_KEYS = {
    "chunked_prefill",
    "skip_tokenizer_init",
    "mixed_chunk",
    "prefix_caching",
    "cache_report",
}

# vLLM sizes the CPU KV cache from free RSS when this is unset, which varies run to run; its old
# fixed default (4 GiB) keeps CPU runs comparable.
DEFAULT_CPU_KVCACHE_SPACE_GIB = 4


@dataclass(frozen=True)
class LaunchSpec:
    engine: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port_placeholder: str = PORT_PLACEHOLDER


def _check(engine: str, settings: dict, allowed: frozenset) -> dict:
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(f"unknown {engine} setting(s) {unknown}; allowed: {sorted(allowed)}")
    for key in _BOOL_KEYS & set(settings):
        if settings[key] is not None and not isinstance(settings[key], bool):
            raise ValueError(f"{engine} setting {key!r} must be true/false, got {settings[key]!r}")
    extra = settings.get("extra_args") or []
    if not isinstance(extra, list | tuple) or not all(isinstance(a, str) for a in extra):
        raise ValueError(f"{engine} setting 'extra_args' must be a list of strings, got {extra!r}")
    env = settings.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError(
            f"{engine} setting 'env' must map variable names to strings (quote numbers), "
            f"got {env!r}"
        )
    # None means "leave the engine's default", so a YAML `key: null` can switch a flag off.
    return {k: v for k, v in settings.items() if v is not None}


def _opt(flag: str, value) -> list[str]:
    return [] if value is None else [flag, str(value)]


def vllm_launch(
    model_dir: str,
    served_model_name: str,
    settings: dict,
    *,
    device: str = "cuda",
    host: str = "127.0.0.1",
    exe: str = "vllm",
) -> LaunchSpec:
    s = _check("vllm", settings, VLLM_KEYS)
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
    cmd += _opt("--dtype", s.get("dtype"))
    cmd += _opt("--max-model-len", s.get("max_model_len"))
    cmd += _opt("--gpu-memory-utilization", s.get("gpu_memory_utilization"))
    cmd += _opt("--tensor-parallel-size", tp)
    if ep is not None and ep > 1:
        cmd.append("--enable-expert-parallel")
    cmd += _opt("--quantization", s.get("quantization"))
    cmd += _opt("--load-format", s.get("load_format"))
    if "chunked_prefill" in s:  # a BooleanOptionalAction in vLLM: both states are explicit
        cmd.append(
            "--enable-chunked-prefill" if s["chunked_prefill"] else "--no-enable-chunked-prefill"
        )
    cmd += _opt("--tokenizer", s.get("tokenizer"))
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


def sglang_launch(
    model_dir: str,
    served_model_name: str,
    settings: dict,
    *,
    host: str = "127.0.0.1",
    python: str = "python",
) -> LaunchSpec:
    s = _check("sglang", settings, SGLANG_KEYS)
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
    cmd += _opt("--dtype", s.get("dtype"))
    cmd += _opt("--context-length", context)
    cmd += _opt("--mem-fraction-static", s.get("mem_fraction_static"))
    cmd += _opt("--tp-size", s.get("tensor_parallel_size"))
    cmd += _opt("--ep-size", s.get("expert_parallel_size"))
    cmd += _opt("--quantization", s.get("quantization"))
    cmd += _opt("--load-format", s.get("load_format"))
    if s.get("chunked_prefill") is False:  # SGLang chunks prefill by default; -1 turns it off
        cmd += ["--chunked-prefill-size", "-1"]
    if s.get("mixed_chunk"):
        cmd.append("--enable-mixed-chunk")
    if s.get("skip_tokenizer_init"):
        cmd.append("--skip-tokenizer-init")
    cmd += _opt("--tokenizer-path", s.get("tokenizer"))
    if s.get("prefix_caching") is False:  # the radix cache is on by default
        cmd.append("--disable-radix-cache")
    if s.get("cache_report"):  # usage.prompt_tokens_details.cached_tokens, when above 0
        cmd.append("--enable-cache-report")
    cmd.append("--enable-metrics")  # Prometheus /metrics, which the sweep scenario scrapes
    cmd += list(s.get("extra_args", []))
    return LaunchSpec("sglang", cmd, dict(s.get("env", {})))


def cache_state(engine: str, prefix_caching: bool) -> dict:
    """How a server's prefix cache is set for the measurements, for every result's provenance."""
    flags = {
        "vllm": ("--no-enable-prefix-caching", "--enable-prefix-caching"),
        "sglang": ("--disable-radix-cache", "(radix cache on: the engine's default)"),
    }[engine]
    return {
        "prefix_caching": prefix_caching,
        "how": flags[prefix_caching],
        "proof": "usage.prompt_tokens_details.cached_tokens of every request "
        + (
            "(--enable-prompt-tokens-details)"
            if engine == "vllm"
            else "(--enable-cache-report; absent = 0)"
        ),
    }


def build_launch(
    engine: str, model_dir: str, served_model_name: str, settings: dict, **kwargs
) -> LaunchSpec:
    """Dispatch on ``engine`` ("vllm" | "sglang"); kwargs go to the engine's builder."""
    builders = {"vllm": vllm_launch, "sglang": sglang_launch}
    builder = builders.get(engine.lower())
    if builder is None:
        raise ValueError(f"no server launcher for engine {engine!r}; have {sorted(builders)}")
    return builder(model_dir, served_model_name, settings, **kwargs)
