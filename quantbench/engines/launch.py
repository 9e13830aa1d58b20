"""What every server command line shares: the port placeholder, the launch spec, and the check
of an engine's flag settings. Each engine package builds its own command line (vLLM:
quantbench/engines/vllm/launch.py, SGLang: .../sglang/launch.py, llama.cpp: .../llamacpp/);
the port is left as ``{port}`` for :class:`quantbench.engines.server.ManagedServer` to fill in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BOOL_KEYS",
    "COMMON_KEYS",
    "PORT_PLACEHOLDER",
    "LaunchSpec",
    "build_launch",
    "cache_state",
    "check_settings",
    "opt",
]

PORT_PLACEHOLDER = "{port}"

# The flag settings of vLLM and SGLang alike (the served engines add theirs).
COMMON_KEYS = frozenset(
    {
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
)
BOOL_KEYS = frozenset(
    {"chunked_prefill", "skip_tokenizer_init", "mixed_chunk", "prefix_caching", "cache_report"}
)


@dataclass(frozen=True)
class LaunchSpec:
    engine: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port_placeholder: str = PORT_PLACEHOLDER


def check_settings(engine: str, settings: dict, allowed: frozenset) -> dict:
    """The settings, refused if unknown to `engine` or mistyped; None values dropped."""
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(f"unknown {engine} setting(s) {unknown}; allowed: {sorted(allowed)}")
    for key in BOOL_KEYS & set(settings):
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


def opt(flag: str, value) -> list[str]:
    return [] if value is None else [flag, str(value)]


def build_launch(
    engine: str, model_dir: str, served_model_name: str, settings: dict, **kwargs
) -> LaunchSpec:
    """The command line of `engine`'s server (its package's `launch` function)."""
    from quantbench.engines import get_engine

    try:
        builder = get_engine(engine.lower()).launch
    except (KeyError, AttributeError):
        raise ValueError(f"no server launcher for engine {engine!r}") from None
    return builder(model_dir, served_model_name, settings, **kwargs)


def cache_state(engine: str, prefix_caching: bool) -> dict:
    """How a server's prefix cache is set for the measurements (the engine's declaration)."""
    from quantbench.engines import get_engine

    return get_engine(engine).cache_state(prefix_caching)
