"""llm-compressor one-shot schemes, saved as compressed-tensors checkpoints that vLLM, SGLang
and Transformers load.

algorithm: `rtn` (round to nearest, data-free unless the scheme has static activation scales),
`gptq` (GPTQModifier) or `awq` (AWQModifier smoothing, then round-to-nearest of the scheme).
"""

from __future__ import annotations

from quantbench.quant import QuantMethod, load_bf16_model, register_quant_method
from quantbench.quant.calibration import calibration_dataset, calibration_facts

ALGORITHMS = ("rtn", "gptq", "awq")


def scheme_facts(scheme: str) -> dict:
    """Bits, group size and activation handling of a compressed-tensors preset scheme, read
    from compressed-tensors itself (it owns the definitions)."""
    from compressed_tensors.quantization import preset_name_to_scheme

    spec = preset_name_to_scheme(scheme, ["Linear"])
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


def build_recipe(scheme: str, algorithm: str, ignore: list[str]) -> list:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    if algorithm == "gptq":
        return [GPTQModifier(targets="Linear", scheme=scheme, ignore=ignore)]
    quantize = QuantizationModifier(targets="Linear", scheme=scheme, ignore=ignore)
    if algorithm == "awq":
        return [_awq_modifier()(), quantize]
    return [quantize]


@register_quant_method("llmcompressor")
class LLMCompressor(QuantMethod):
    """params: scheme (a compressed-tensors preset: FP8_DYNAMIC, FP8_BLOCK, W8A16, W4A16,
    W4A16_ASYM, W8A8, ...), algorithm (rtn | gptq | awq), ignore (module names kept in BF16)."""

    packages = ("torch", "transformers", "llmcompressor", "compressed-tensors")

    def quantize(self, src, dst, calibration):
        import torch
        from llmcompressor import oneshot
        from transformers import AutoTokenizer

        _patch_cpu_only_pin_memory()
        scheme = self.params["scheme"]
        algorithm = self.params.get("algorithm", "rtn")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {algorithm!r}: choose one of {ALGORITHMS}")
        facts = scheme_facts(scheme)
        torch.manual_seed(calibration["seed"])
        model = load_bf16_model(src, calibration["seed"])
        tokenizer = AutoTokenizer.from_pretrained(src)
        recipe = build_recipe(scheme, algorithm, self.params.get("ignore", ["lm_head"]))
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
            "algorithm": algorithm,
            **facts,
            "calibration": calibration_facts(calibration) if needs_data else None,
        }
