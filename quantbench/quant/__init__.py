"""Quantization methods, one registered class each (lm-eval style registry).

A method turns a BF16 checkpoint directory into a checkpoint directory an engine loads, and
declares the checkpoint *format* so the compatibility table can decide which engines load it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from quantbench.io import write_json
from quantbench.status import Status

QUANT_METHODS: dict[str, type[QuantMethod]] = {}


def register_quant_method(name: str):
    def wrap(cls):
        cls.name = name
        QUANT_METHODS[name] = cls
        return cls

    return wrap


def get_quant_method(name: str) -> type[QuantMethod]:
    # Importing the modules registers the built-in methods.
    from quantbench.quant import (  # noqa: F401
        gguf_method,
        gptqmodel_method,
        layout,
        llmcompressor_method,
        passthrough,
        prequantized,
    )

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
        """Write the quantized checkpoint into `dst`; return facts: scheme, weight_bits,
        group_size; `calibration` (what it used, None if data-free); `path` if the checkpoint is
        used in place instead of written to `dst`; `setup_seconds` spent on one-off tool set-up
        (not quantization time)."""
        raise NotImplementedError

    # Distributions whose versions shape this method's output, for the manifest.
    packages: tuple[str, ...] = ("torch", "transformers")

    def versions(self) -> dict:
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for name in self.packages:
            try:
                out[name] = version(name)
            except PackageNotFoundError:
                out[name] = None
        return out


def load_bf16_model(src: Path, seed: int = 0):
    """The checkpoint's weights, or for a dummy model (config only) random weights of its
    architecture, so quantized layouts can be produced without downloading weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if any(Path(src).glob("*.safetensors")) or any(Path(src).glob("*.bin")):
        return AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.bfloat16)


def has_weight_files(path: Path) -> bool:
    return any(Path(path).glob("*.safetensors")) or any(Path(path).glob("*.bin"))


def ensure_weights(src: Path, scratch: Path, seed: int = 0) -> Path:
    """`src` if it holds weights; else (a dummy model) random weights of its architecture saved
    into `scratch`, for tools that read weight files (llama.cpp's converter, GPTQModel)."""
    if has_weight_files(src):
        return Path(src)
    from transformers import AutoTokenizer

    load_bf16_model(src, seed).save_pretrained(scratch)
    AutoTokenizer.from_pretrained(src).save_pretrained(scratch)
    return Path(scratch)


def dir_size_bytes(path: Path) -> int:
    # is_file()/stat() follow symlinks: a Hub snapshot's files count at their blobs' size.
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def bf16_size_bytes(src: Path) -> tuple[int, str]:
    """The BF16 checkpoint's size, the compression ratio's denominator: measured when the model
    has weights; for a dummy model (config only) 2 bytes per parameter plus its other files."""
    if has_weight_files(src):
        return dir_size_bytes(src), "bf16 checkpoint size on disk"
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src))
    params = sum(p.numel() for p in model.parameters())
    return 2 * params + dir_size_bytes(src), "2 bytes x parameter count (dummy model)"


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
    # One-off tool set-up (building llama.cpp's quantizer) is reported apart.
    seconds = time.perf_counter() - start - facts.get("setup_seconds", 0.0)
    if facts.get("path") is None:  # methods that wrote a new checkpoint
        tmp.rename(final)
        facts["path"] = str(final)
    elif tmp.exists():  # used in place: drop any scratch
        shutil.rmtree(tmp)
    base_size, base_method = bf16_size_bytes(src)
    # A weightless layout (method `layout`) has no size on disk to compare.
    size = None if facts.get("weightless") else dir_size_bytes(Path(facts["path"]))
    manifest = {
        "status": Status.OK,
        "method": method.name,
        "format": fmt,
        "scheme": None,
        "weight_bits": None,
        "group_size": None,
        "calibration": None,
        **facts,
        "size_bytes": size,
        "bf16_size_bytes": base_size,
        "bf16_size_method": base_method,
        "compression_ratio": base_size / size if size else None,
        "quantize_seconds": seconds,
        "tool_versions": method.versions(),
        "model": model_manifest,
        "provenance": provenance,
    }
    write_json(out_dir / "quant.json", manifest)
    return manifest
