"""Which engine loads which checkpoint format, with which kernel.

Keys are (checkpoint format, engine); values are the kernels the engine offers for that format,
the default first. A (model, quantization, engine) cell is valid only if its pair is here and
its configured kernel is listed. Sources: vLLM's and SGLang's `--quantization` choices and
Transformers' quantizer integrations.
"""

from __future__ import annotations

COMPAT: dict[tuple[str, str], list[str]] = {
    ("bf16", "transformers"): ["none"],
    ("bf16", "vllm"): ["none", "fp8"],  # fp8 = on-the-fly FP8 of BF16 weights
    ("bf16", "sglang"): ["none", "fp8"],
    # llm-compressor output; Transformers decompresses on CPU, vLLM/SGLang run native kernels.
    ("compressed-tensors", "transformers"): ["compressed-tensors"],
    ("compressed-tensors", "vllm"): ["compressed-tensors"],
    ("compressed-tensors", "sglang"): ["compressed-tensors"],
    ("fp8", "transformers"): ["fp8"],
    ("fp8", "vllm"): ["fp8"],
    ("fp8", "sglang"): ["fp8"],
    ("awq", "transformers"): ["awq"],
    ("awq", "vllm"): ["awq_marlin", "awq"],
    ("awq", "sglang"): ["awq_marlin", "awq"],
    ("gptq", "transformers"): ["gptq"],
    ("gptq", "vllm"): ["gptq_marlin", "gptq"],
    ("gptq", "sglang"): ["gptq_marlin", "gptq"],
    ("gguf", "transformers"): ["gguf"],  # dequantized to the load dtype
    ("gguf", "vllm"): ["gguf"],
}


def kernels(fmt: str, engine: str) -> list[str]:
    return COMPAT.get((fmt, engine), [])


def is_compatible(fmt: str, engine: str, kernel: str | None = None) -> bool:
    offered = kernels(fmt, engine)
    return bool(offered) and (kernel is None or kernel in offered)


def resolve_kernel(fmt: str, engine: str, kernel: str | None) -> str:
    offered = kernels(fmt, engine)
    if not offered:
        raise ValueError(f"engine {engine!r} cannot load checkpoint format {fmt!r}")
    if kernel is None:
        return offered[0]
    if kernel not in offered:
        raise ValueError(
            f"engine {engine!r} has no kernel {kernel!r} for format {fmt!r}; "
            f"choose one of {offered}"
        )
    return kernel
