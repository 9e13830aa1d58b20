"""llm-compressor one-shot schemes, saved as compressed-tensors checkpoints that vLLM, SGLang
and Transformers load."""

from __future__ import annotations

import re

from quantbench.quant import QuantMethod, load_bf16_model, register_quant_method

# scheme -> (weight bits, group size) for the report; llm-compressor owns the real definitions.
SCHEME_FACTS = {
    "FP8_DYNAMIC": (8, None),
    "FP8_BLOCK": (8, 128),
    "W8A16": (8, None),
    "W4A16": (4, 128),
    "W8A8": (8, None),
}


def _patch_cpu_only_pin_memory() -> None:
    """llm-compressor pins its activation cache, which raises on a machine without an
    accelerator ("Cannot access accelerator device"). Pinning only speeds host->GPU copies,
    so on a CPU-only machine it is skipped."""
    import torch

    if torch.cuda.is_available():
        return
    try:
        from llmcompressor.pipelines.cache import IntermediatesCache
    except ImportError:
        return
    for name in ("pin_memory", "_pin_memory"):
        if hasattr(IntermediatesCache, name):
            setattr(IntermediatesCache, name, lambda self, *a, **k: self)


def calibration_dataset(tokenizer, calibration: dict):
    """Fixed-length samples from a local text file (default) or a Hub dataset."""
    from datasets import Dataset, load_dataset

    n, seq_len = calibration["num_samples"], calibration["seq_len"]
    source = calibration["dataset"]
    if source.startswith("hf:"):
        ds = load_dataset(source[3:], split=calibration.get("split", "train"))
        text = "\n\n".join(ds.shuffle(seed=calibration["seed"])[: n * 4]["text"])
    else:
        with open(source) as fh:
            text = fh.read()
    ids = tokenizer(text).input_ids
    if len(ids) < n * seq_len:
        raise ValueError(
            f"calibration text {source} has {len(ids)} tokens; {n} samples x {seq_len} need more:"
            " lower calibration.num_samples or calibration.seq_len"
        )
    samples = [ids[i * seq_len : (i + 1) * seq_len] for i in range(n)]
    return Dataset.from_dict({"input_ids": samples, "attention_mask": [[1] * seq_len] * n})


@register_quant_method("llmcompressor")
class LLMCompressor(QuantMethod):
    """params: scheme (FP8_DYNAMIC, FP8_BLOCK, W8A16, W4A16, W8A8), algorithm (rtn | gptq)."""

    def quantize(self, src, dst, calibration):
        import torch
        from llmcompressor import oneshot
        from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
        from transformers import AutoTokenizer

        _patch_cpu_only_pin_memory()
        scheme = self.params["scheme"]
        algorithm = self.params.get("algorithm", "rtn")
        torch.manual_seed(calibration["seed"])
        model = load_bf16_model(src, calibration["seed"])
        tokenizer = AutoTokenizer.from_pretrained(src)
        ignore = self.params.get("ignore", ["lm_head"])
        if algorithm == "gptq":
            recipe = GPTQModifier(targets="Linear", scheme=scheme, ignore=ignore)
        else:
            recipe = QuantizationModifier(targets="Linear", scheme=scheme, ignore=ignore)
        kwargs = {}
        if algorithm == "gptq" or re.match("W8A8", scheme):  # data-dependent schemes
            kwargs = {
                "dataset": calibration_dataset(tokenizer, calibration),
                "num_calibration_samples": calibration["num_samples"],
                "max_seq_length": calibration["seq_len"],
            }
        oneshot(model=model, recipe=recipe, **kwargs)
        model.save_pretrained(dst, save_compressed=True)
        tokenizer.save_pretrained(dst)
        bits, group = SCHEME_FACTS.get(scheme, (None, None))
        return {"scheme": scheme, "algorithm": algorithm, "weight_bits": bits, "group_size": group}
