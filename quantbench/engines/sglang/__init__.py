"""SGLang's OpenAI-compatible server (`python -m sglang.launch_server`): its flags, start-up log
facts, own benchmark client (`sglang.bench_serving`) and the checkpoint formats it loads."""

from __future__ import annotations

from quantbench.engines import register_engine
from quantbench.engines.base import POSITIVE_INT
from quantbench.engines.served import COMMON_FLAG_SETTINGS, SERVED_SETTINGS, ServedEngine
from quantbench.engines.sglang.client import TOOL
from quantbench.engines.sglang.launch import SGLANG_KEYS, sglang_launch
from quantbench.engines.sglang.logfacts import parse_sglang_log


@register_engine("sglang")
class SGLangEngine(ServedEngine):
    description = "an SGLang server; keys map to its flags (quantbench/engines/sglang/)"
    environment = (
        "3.12",
        ("sglang",),
        "SGLang's server (its own torch), benchmark and evaluate jobs.",
    )
    packages = ("sglang",)
    weightless = True  # --load-format dummy builds any quantized layout's tensors
    flag_keys = SGLANG_KEYS
    settings = {
        **SERVED_SETTINGS,
        "executable": {"type": "string", "description": "the Python that runs SGLang"},
        **COMMON_FLAG_SETTINGS,
        "context_length": POSITIVE_INT,
        "mem_fraction_static": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "mixed_chunk": {"type": "boolean"},
    }
    compat = {
        "bf16": ("none", "fp8"),
        "compressed-tensors": ("compressed-tensors",),
        "fp8": ("fp8",),
        "awq": ("awq_marlin", "awq"),
        "gptq": ("gptq_marlin", "gptq"),
        "gguf": ("gguf",),  # with --load-format gguf
    }
    own_client_tool = TOOL
    cache_flags = ("--disable-radix-cache", "(radix cache on: the engine's default)")
    cache_proof = (
        "usage.prompt_tokens_details.cached_tokens of every request "
        "(--enable-cache-report; absent = 0)"
    )
    # Its cache report leaves prompt_tokens_details out when no token was cached.
    cache_report_omits_zero = True
    # tvm-ffi: its JIT kernels (Marlin for AWQ/GPTQ, minutes of nvcc); DeepGEMM's block-FP8
    # kernels; SGLang's own (FA3 lock, FlashInfer autotune); Triton and Inductor.
    compile_cache_env = {
        "TVM_FFI_CACHE_DIR": "tvm-ffi",
        "SGLANG_DG_CACHE_DIR": "deep_gemm",
        "SGLANG_CACHE_DIR": "sglang",
        "TRITON_CACHE_DIR": "triton",
        "TORCHINDUCTOR_CACHE_DIR": "inductor",
        "FLASHINFER_WORKSPACE_BASE": "flashinfer",
    }
    launch = staticmethod(sglang_launch)
    parse_log = staticmethod(parse_sglang_log)

    def model_path(self, checkpoint, flags):
        path = super().model_path(checkpoint, flags)
        if path.endswith(".gguf"):
            flags.setdefault("load_format", "gguf")
        return path

    def build_command(self, model_path, served_name, flags):
        kwargs = {}
        if self.settings.get("executable"):
            kwargs["python"] = self.settings["executable"]
        return sglang_launch(model_path, served_name, flags, **kwargs)
