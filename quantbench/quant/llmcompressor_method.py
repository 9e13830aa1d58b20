"""llm-compressor one-shot schemes, saved as compressed-tensors checkpoints that vLLM, SGLang
and Transformers load.

algorithm: `rtn` (round to nearest, data-free unless the scheme has static activation scales),
`gptq` (GPTQModifier) or `awq` (AWQModifier smoothing, then round-to-nearest of the scheme).
`bits` / `group_size` override the preset's integer weights (group_size -1: one scale per output
channel), e.g. W4A16 with bits 2 and group_size -1: 2-bit RTN without groups, a deliberately
destructive setting for showing what the quality gate calls a collapse.
"""

from __future__ import annotations

from quantbench.quant import QuantEnv, QuantMethod, load_bf16_model, register_quant_method
from quantbench.quant.calibration import calibration_dataset, calibration_facts

ALGORITHMS = ("rtn", "gptq", "awq")
# compressed-tensors presets with static activation scales: calibrated even with rtn
# (compressed_tensors.quantization.preset_name_to_scheme(s).input_activations.dynamic is False).
STATIC_ACTIVATION_SCHEMES = frozenset({"FP8"})
SCHEMES = [
    "FP8_DYNAMIC", "FP8_BLOCK", "FP8", "W8A16", "W4A16", "W4A16_ASYM", "W8A8", "INT8", "W4AFP8",
    "NVFP4A16", "NVFP4", "MXFP4A16",
]  # fmt: skip


def resolve_scheme(scheme: str, bits: int | None = None, group_size: int | None = None):
    """The preset as a compressed-tensors QuantizationScheme, its integer weights' bits and
    group size overridden where given (group_size -1 or 0: per output channel)."""
    from compressed_tensors.quantization import preset_name_to_scheme

    spec = preset_name_to_scheme(scheme, ["Linear"])
    if bits is None and group_size is None:
        return spec
    w = spec.weights
    if w is None or w.type != "int":
        raise ValueError(f"bits/group_size override integer weights; {scheme} has {w}")
    update: dict = {}
    if bits is not None:
        update["num_bits"] = bits
    if group_size is not None:
        per_channel = group_size <= 0
        update.update(
            strategy="channel" if per_channel else "group",
            group_size=None if per_channel else group_size,
        )
    args = w.model_dump()
    args.update(update)
    return spec.model_copy(update={"weights": type(w)(**args)})


def scheme_facts(scheme: str, bits: int | None = None, group_size: int | None = None) -> dict:
    """Bits, group size and activation handling of a compressed-tensors preset scheme (with the
    overrides of ``resolve_scheme``), read from compressed-tensors itself (it owns the
    definitions)."""
    spec = resolve_scheme(scheme, bits, group_size)
    w, act = spec.weights, spec.input_activations
    group = w.group_size
    if w.block_structure:  # FP8_BLOCK: 128x128 weight blocks, as in Qwen3-FP8 checkpoints
        group = "x".join(str(b) for b in w.block_structure)
    return {
        "weight_bits": w.num_bits,
        "weight_type": f"{w.type}{w.num_bits}",
        "group_size": group,
        "weight_strategy": str(w.strategy.value if hasattr(w.strategy, "value") else w.strategy),
        "symmetric": w.symmetric,
        "activation_bits": act.num_bits if act else None,
        "activation_dynamic": act.dynamic if act else None,
    }


def _patch_cpu_only_pin_memory() -> None:
    """llm-compressor pins its activation cache (AWQ does, before each smoothing grid search),
    which raises on a machine without an accelerator ("Cannot access accelerator device").
    Pinning only speeds host->GPU copies, so without one it is skipped."""
    import torch

    if torch.accelerator.is_available():
        return
    try:
        from llmcompressor.pipelines.cache import IntermediatesCache
    except ImportError:
        return
    # pin_memory(batch_index, input_names) pins in place and returns None; _pin_intermediate is
    # the per-value helper older and newer releases call. Both become no-ops.
    if hasattr(IntermediatesCache, "pin_memory"):
        IntermediatesCache.pin_memory = lambda self, *a, **k: None
    if hasattr(IntermediatesCache, "_pin_intermediate"):
        IntermediatesCache._pin_intermediate = classmethod(lambda cls, *a, **k: None)


def _awq_modifier():
    # AWQ moved from modifiers.awq (one modifier that also quantized) to modifiers.transform
    # (smoothing only, followed by a quantization modifier); the old path is a shim.
    try:
        from llmcompressor.modifiers.transform import AWQModifier
    except ImportError:  # llm-compressor < 0.9
        from llmcompressor.modifiers.awq import AWQModifier
    return AWQModifier


def build_recipe(scheme, algorithm: str, ignore: list[str]) -> list:
    """``scheme`` a preset name or a QuantizationScheme (``resolve_scheme``'s override)."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    how = (
        {"scheme": scheme, "targets": "Linear"}
        if isinstance(scheme, str)
        else {"config_groups": {"group_0": scheme}}
    )
    if algorithm == "gptq":
        return [GPTQModifier(**how, ignore=ignore)]
    quantize = QuantizationModifier(**how, ignore=ignore)
    if algorithm == "awq":
        return [_awq_modifier()(), quantize]
    return [quantize]


@register_quant_method("llmcompressor")
class LLMCompressor(QuantMethod):
    """params: scheme (a compressed-tensors preset: FP8_DYNAMIC, FP8_BLOCK, W8A16, W4A16,
    W4A16_ASYM, W8A8, ...), algorithm (rtn | gptq | awq), ignore (module names kept in BF16),
    bits and group_size (override the preset's integer weights; group_size -1: per channel)."""

    format = "compressed-tensors"
    settings = {
        "scheme": {
            "type": "string",
            "enum": SCHEMES,
            "description": "llmcompressor: a compressed-tensors preset scheme",
        },
        "algorithm": {
            "type": "string",
            "enum": list(ALGORITHMS),
            "default": "rtn",
            "description": "llmcompressor: rtn (round to nearest), gptq or awq",
        },
        "ignore": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["lm_head"],
            "description": "llmcompressor: modules kept in BF16",
        },
        "bits": {
            "type": "integer",
            "enum": [2, 3, 4, 8],
            "description": "llmcompressor: weight bits (overrides the scheme's integer weights)",
        },
        "group_size": {
            "type": "integer",
            "minimum": -1,
            "description": "llmcompressor: group size (overrides the scheme's; -1: per channel)",
        },
    }
    required_settings = ("scheme",)
    environment = QuantEnv(
        "quantize", ("quantize",), "llm-compressor checkpoints (pins transformers<=5.17)."
    )
    packages = ("torch", "transformers", "llmcompressor", "compressed-tensors")

    @classmethod
    def calibrates(cls, params):
        # Data-dependent: GPTQ and AWQ, and any scheme with static activation scales.
        return (
            params.get("algorithm", "rtn") != "rtn"
            or params.get("scheme") in STATIC_ACTIVATION_SCHEMES
        )

    def quantize(self, src, dst, calibration):
        import torch
        from llmcompressor import oneshot
        from transformers import AutoTokenizer

        _patch_cpu_only_pin_memory()
        scheme = self.params["scheme"]
        algorithm = self.params.get("algorithm", "rtn")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {algorithm!r}: choose one of {ALGORITHMS}")
        bits, group_size = self.params.get("bits"), self.params.get("group_size")
        facts = scheme_facts(scheme, bits, group_size)
        torch.manual_seed(calibration["seed"])
        model = load_bf16_model(src, calibration["seed"])
        tokenizer = AutoTokenizer.from_pretrained(src)
        overridden = bits is not None or group_size is not None
        recipe = build_recipe(
            resolve_scheme(scheme, bits, group_size) if overridden else scheme,
            algorithm,
            self.params.get("ignore", ["lm_head"]),
        )
        # Data-dependent: GPTQ and AWQ, and any scheme with static activation scales.
        needs_data = algorithm != "rtn" or facts["activation_dynamic"] is False
        kwargs = {}
        if needs_data:
            kwargs = {
                "dataset": calibration_dataset(tokenizer, calibration),
                "num_calibration_samples": calibration["num_samples"],
                "max_seq_length": calibration["seq_len"],
            }
        oneshot(model=model, recipe=recipe, **kwargs)
        model.save_pretrained(dst, save_compressed=True)
        tokenizer.save_pretrained(dst)
        return {
            "scheme": scheme,
            "scheme_overrides": {"bits": bits, "group_size": group_size} if overridden else None,
            "algorithm": algorithm,
            **facts,
            "calibration": calibration_facts(calibration) if needs_data else None,
        }
