"""Quantization methods, one registered class each (lm-eval style registry).

A method turns a BF16 checkpoint directory into a checkpoint directory an engine loads, and
declares the checkpoint *format* so the compatibility table can decide which engines load it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from quantbench.io import write_json

QUANT_METHODS: dict[str, type[QuantMethod]] = {}


def register_quant_method(name: str):
    def wrap(cls):
        cls.name = name
        QUANT_METHODS[name] = cls
        return cls

    return wrap


def get_quant_method(name: str) -> type[QuantMethod]:
    # Importing the modules registers the built-in methods.
    from quantbench.quant import llmcompressor_method, passthrough  # noqa: F401

    try:
        return QUANT_METHODS[name]
    except KeyError:
        raise KeyError(
            f"unknown quantization method {name!r}; known: {sorted(QUANT_METHODS)}"
        ) from None


class QuantMethod:
    """A quantizer. Its checkpoint format (the compatibility table's key) is declared by its
    quantize rule, where the workflow can read it before any job runs."""

    name = "base"

    def __init__(self, params: dict):
        self.params = params

    def quantize(self, src: Path, dst: Path, calibration: dict) -> dict:
        """Write the quantized checkpoint into `dst`; return facts (scheme, bits, group size)."""
        raise NotImplementedError


def load_bf16_model(src: Path, seed: int = 0):
    """The checkpoint's weights, or for a dummy model (config only) random weights of its
    architecture, so quantized layouts can be produced without downloading weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if any(Path(src).glob("*.safetensors")) or any(Path(src).glob("*.bin")):
        return AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.bfloat16)


def dir_size_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def run_quantization(
    method: QuantMethod,
    model_manifest: dict,
    out_dir: Path,
    calibration: dict,
    provenance: dict,
    fmt: str,
) -> dict:
    """Quantize into a temporary directory and rename it into place, so a failed or interrupted
    run never leaves a checkpoint that looks finished; then write the manifest."""
    src = Path(model_manifest["path"])
    final = out_dir / "checkpoint"
    tmp = out_dir / ".checkpoint.partial"
    for stale in (tmp, final):
        if stale.exists():
            shutil.rmtree(stale)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    facts = method.quantize(src, tmp, calibration)
    seconds = time.perf_counter() - start
    if facts.get("path") is None:  # methods that wrote a new checkpoint
        tmp.rename(final)
        facts["path"] = str(final)
    size = dir_size_bytes(Path(facts["path"]))
    base_size = dir_size_bytes(src)
    manifest = {
        "status": "ok",
        "method": method.name,
        "format": fmt,
        **facts,
        "size_bytes": size,
        "bf16_size_bytes": base_size,
        "compression_ratio": base_size / size if size else None,
        "quantize_seconds": seconds,
        "model": model_manifest,
        "provenance": provenance,
    }
    write_json(out_dir / "quant.json", manifest)
    return manifest
