"""Which engine loads which checkpoint format, with which kernel.

Keys are (checkpoint format, engine); values are the kernels the engine offers for that format,
the default first. A (model, quantization, engine) cell is valid only if its pair is here and
its configured kernel (`kernel:` on the quantization entry, a config axis) is listed.

Formats are what the quantize rules write: `bf16`; `compressed-tensors` (llm-compressor);
`gguf` (llama.cpp); `awq`, `gptq`, `fp8` (GPTQModel, AutoAWQ and published checkpoints such as
Qwen/Qwen3-8B-AWQ and Qwen/Qwen3-8B-FP8: config.json `quant_method` awq / gptq / fp8).

Kernels are the engines' own names. vLLM and SGLang: `--quantization` choices (vLLM
`QuantizationMethods`: awq, awq_marlin, gptq, gptq_marlin, fp8, compressed-tensors, gguf,
cpu_awq, ...; SGLang `QUANTIZATION_CHOICES`: awq, awq_marlin, gptq, gptq_marlin, fp8,
compressed-tensors, gguf, ...); `none` means no flag for a BF16 checkpoint. Transformers: the
quantizer its `from_pretrained` picks from the checkpoint (compressed-tensors decompresses on
CPU; fp8 dequantizes to BF16 without a GPU; awq needs the `gptqmodel` package and gptq both
`gptqmodel` and `optimum` in the engine's environment, neither is in the main one; gguf loads
with `gguf_file=` and dequantizes to the load dtype).
"""

from __future__ import annotations

COMPAT: dict[tuple[str, str], list[str]] = {
    ("bf16", "transformers"): ["none"],
    ("bf16", "vllm"): ["none", "fp8"],  # fp8 = on-the-fly FP8 of BF16 weights
    ("bf16", "sglang"): ["none", "fp8"],
    # llm-compressor output; Transformers decompresses on CPU, vLLM/SGLang run native kernels
    # (they pick Marlin/Machete/CUTLASS inside compressed-tensors themselves).
    ("compressed-tensors", "transformers"): ["compressed-tensors"],
    ("compressed-tensors", "vllm"): ["compressed-tensors"],
    ("compressed-tensors", "sglang"): ["compressed-tensors"],
    # quant_method "fp8" (e.g. Qwen3-8B-FP8, 128x128 blocks)
    ("fp8", "transformers"): ["fp8"],
    ("fp8", "vllm"): ["fp8"],
    ("fp8", "sglang"): ["fp8"],
    # awq vs awq_marlin: the L40 reference table measures both (reference/).
    ("awq", "transformers"): ["awq"],
    ("awq", "vllm"): ["awq_marlin", "awq", "cpu_awq"],  # cpu_awq: vLLM's CPU build
    ("awq", "sglang"): ["awq_marlin", "awq"],
    ("gptq", "transformers"): ["gptq"],
    ("gptq", "vllm"): ["gptq_marlin", "gptq"],
    ("gptq", "sglang"): ["gptq_marlin", "gptq"],
    ("gguf", "transformers"): ["gguf"],  # dequantized to the load dtype
    ("gguf", "vllm"): ["gguf"],
    ("gguf", "sglang"): ["gguf"],  # with --load-format gguf
}
FORMATS = sorted({fmt for fmt, _ in COMPAT})


# An already running server serves whatever it was started with: nothing to check here.
EXTERNAL_ENGINES = {"openai": ["external"]}


def kernels(fmt: str, engine: str) -> list[str]:
    return EXTERNAL_ENGINES.get(engine) or COMPAT.get((fmt, engine), [])


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
