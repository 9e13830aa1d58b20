"""Which engine loads which checkpoint format, with which kernel.

Keys are (checkpoint format, engine); values are the kernels the engine offers for that format,
the default first. A (model, quantization, engine) cell is valid only if its pair is here and
its configured kernel (`kernel:` on the quantization entry, a config axis) is listed.

Formats are what the quantize rules write: `bf16`; `compressed-tensors` (llm-compressor);
`gguf` (llama.cpp); `awq`, `gptq`, `fp8` (GPTQModel, AutoAWQ and published checkpoints such as
Qwen/Qwen3-8B-AWQ and Qwen/Qwen3-8B-FP8: config.json `quant_method` awq / gptq / fp8).

Each engine package declares the rows of the formats it loads (`compat` on its class,
quantbench/engines/<engine>/); a quantization method that writes a new format declares that
format's rows beside it (`compat` on its class, quantbench/quant/<module>.py: format -> engine
-> kernels). This module merges both into one table; a format with no rows fails the config
check (quantbench.plan), naming where to declare them.

Kernels are the engines' own names. vLLM and SGLang: `--quantization` choices (vLLM
`QuantizationMethods`: awq, awq_marlin, gptq, gptq_marlin, fp8, compressed-tensors, gguf,
cpu_awq, ...; SGLang `QUANTIZATION_CHOICES`: awq, awq_marlin, gptq, gptq_marlin, fp8,
compressed-tensors, gguf, ...); `none` means no flag for a BF16 checkpoint. Transformers: the
quantizer its `from_pretrained` picks from the checkpoint. llama.cpp: `gguf`, its own kernels
for each GGUF tensor type.
"""

from __future__ import annotations

from quantbench.engines import ENGINES
from quantbench.engines import compat_rows as engine_rows
from quantbench.quant import compat_rows as method_rows


def merged_rows() -> dict[tuple[str, str], list[str]]:
    """The engines' rows, plus the rows methods declare for their formats; one pair declared
    both ways must agree (else which default kernel runs would depend on the reader)."""
    rows = engine_rows()
    for pair, offered in method_rows().items():
        if rows.setdefault(pair, offered) != offered:
            fmt, engine = pair
            raise ValueError(
                f"compat row ({fmt!r}, {engine!r}) is declared by engine {engine!r} as "
                f"{rows[pair]} and by a quantization method as {offered}: keep one"
            )
    return rows


# (format, engine) -> kernels: every row engines and quantization methods declare.
COMPAT: dict[tuple[str, str], list[str]] = merged_rows()
FORMATS = sorted({fmt for fmt, _ in COMPAT})
# Engines that take whatever they are given (an already running server: nothing to check).
EXTERNAL_ENGINES = {name: [cls.any_format] for name, cls in ENGINES.items() if cls.any_format}


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
