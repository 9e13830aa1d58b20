"""llama.cpp's OpenAI-compatible server, `llama-server`, serving GGUF checkpoints.

It is built from the llama.cpp tree the GGUF quantization method already uses (build.py). Its
prompt cache is on by default; measurements turn it off (`--no-cache-prompt`), and every
response's `usage.prompt_tokens_details.cached_tokens` (llama-server's `n_prompt_tokens_cache`,
also `timings.cache_n`) is the proof. It runs requests on `parallel` slots (continuous
batching), so the serving, batch and sweep scenarios apply (its `/metrics` is on); it has no
benchmark client of its own against a server, so `engine_client` does not.
"""

from __future__ import annotations

from quantbench.engines import register_engine
from quantbench.engines.base import POSITIVE_INT
from quantbench.engines.launch import PORT_PLACEHOLDER, LaunchSpec, check_settings, opt
from quantbench.engines.llamacpp.logfacts import parse_llamacpp_log
from quantbench.engines.served import SERVED_SETTINGS, ServedEngine

# setting -> llama-server flag (llama.cpp common/arg.cpp)
FLAGS = {
    "ctx_size": "--ctx-size",
    "n_gpu_layers": "--n-gpu-layers",
    "parallel": "--parallel",
    "threads": "--threads",
    "batch_size": "--batch-size",
    "ubatch_size": "--ubatch-size",
    "flash_attn": "--flash-attn",
    "cache_type_k": "--cache-type-k",
    "cache_type_v": "--cache-type-v",
}
KEYS = frozenset(
    {*FLAGS, "extra_args", "env", "prefix_caching", "cache_report", "quantization", "tokenizer"}
)


def llamacpp_launch(
    model_file: str,
    served_model_name: str,
    settings: dict,
    *,
    host: str = "127.0.0.1",
    exe: str = "llama-server",
) -> LaunchSpec:
    s = check_settings("llamacpp", settings, KEYS)
    cmd = [exe, "--model", str(model_file), "--host", host, "--port", PORT_PLACEHOLDER]
    # Verbosity 4 prints the load facts (model buffers, KV cache) the start-up facts read; about
    # 30 lines per request, none per token.
    cmd += ["--alias", served_model_name, "--no-webui", "--log-verbosity", "4"]
    for key, flag in FLAGS.items():
        cmd += opt(flag, s.get(key))
    if s.get("prefix_caching") is False:  # the prompt cache and its host-memory copy are on
        cmd += ["--no-cache-prompt", "--cache-ram", "0"]
    # Its cache report is always on: usage.prompt_tokens_details.cached_tokens; /metrics too.
    cmd.append("--metrics")
    cmd += list(s.get("extra_args", []))
    return LaunchSpec("llamacpp", cmd, dict(s.get("env", {})))


@register_engine("llamacpp")
class LlamaCppEngine(ServedEngine):
    description = "llama.cpp's llama-server; keys map to its flags (quantbench/engines/llamacpp/)"
    # llama-server is built in the job from llama.cpp's tree (build.py): a compiler and cmake.
    environment = (
        "3.11",
        ("eval",),
        "llama.cpp's llama-server (built in the job), benchmark and evaluate jobs.",
        ("cmake>=3.14", "make", "cxx-compiler"),
    )
    packages = ()  # a binary: its version is in its start-up log
    compat = {"gguf": ("gguf",)}  # llama.cpp's own kernels for each GGUF type
    settings = {
        **SERVED_SETTINGS,
        "executable": {"type": "string", "description": "the `llama-server` program"},
        "ctx_size": POSITIVE_INT,
        "n_gpu_layers": {"type": "integer", "minimum": -1},
        "parallel": POSITIVE_INT,
        "threads": POSITIVE_INT,
        "batch_size": POSITIVE_INT,
        "ubatch_size": POSITIVE_INT,
        "flash_attn": {"type": "string", "enum": ["on", "off", "auto"]},
        "cache_type_k": {"type": "string"},
        "cache_type_v": {"type": "string"},
    }
    cache_flags = ("--no-cache-prompt --cache-ram 0", "(prompt cache on: the engine's default)")
    cache_proof = (
        "usage.prompt_tokens_details.cached_tokens of every request "
        "(llama-server reports it always)"
    )
    launch = staticmethod(llamacpp_launch)
    parse_log = staticmethod(parse_llamacpp_log)

    def model_path(self, checkpoint, flags):
        path = super().model_path(checkpoint, flags)
        if not path.endswith(".gguf"):
            raise ValueError(f"llama.cpp serves GGUF files; {checkpoint} holds none")
        flags.pop("tokenizer", None)  # the GGUF carries its tokenizer
        flags.pop("quantization", None)  # the GGUF's tensor types say it
        return path

    def build_command(self, model_path, served_name, flags):
        exe = self.settings.get("executable")
        if not exe:
            from quantbench.engines.llamacpp.build import build_server

            exe = str(build_server()[0])
        return llamacpp_launch(model_path, served_name, flags, exe=exe)

    @classmethod
    def version(cls) -> str:
        return "llama.cpp (its build is in the start-up log)"
