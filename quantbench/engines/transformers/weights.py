"""In which form a quantized checkpoint's weights sit in memory once Transformers has loaded it
and run a forward pass: packed (the checkpoint's quantized tensors, as on disk) or decompressed
(dense tensors of the load dtype). A memory figure of a decompressed load is the dense model's,
not the format's, so the path is measured, not assumed: the bytes the model's tensors hold
against the checkpoint's bytes on disk and the dense size of the same architecture.

Transformers 5.17 + compressed-tensors 0.19: `dequantize=False` loads the packed tensors but
registers a hook that decompresses the whole model on its first forward pass; only FP8 schemes
have kernels that keep them (`use_optimized_inference`, CUDA SM89+ or XPU). GGUF is dequantized
on load; GPTQ/AWQ keep packed weights through GPTQModel's kernels, where it is installed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

# The `weights` setting: what the engine asks the library for, and what it accepts.
PACKED, DECOMPRESSED, EITHER = "packed", "decompressed", "packed-or-decompressed"
WEIGHTS_MODES = (PACKED, DECOMPRESSED, EITHER)
# A held size within this share of the checkpoint's (or the dense size) counts as that form;
# the two differ by 2x (FP8, int8) to 4x (int4) on the quantized layers.
TOLERANCE = 0.10


class WeightsPathError(RuntimeError):
    """The weights did not end up in the form the `weights` setting asked for."""


def quant_method(checkpoint: str) -> str | None:
    """The checkpoint's quantization as Transformers dispatches on it: config.json's
    `quantization_config.quant_method`, "gguf" for a GGUF file, None when unquantized."""
    if any(Path(checkpoint).glob("*.gguf")):
        return "gguf"
    config = Path(checkpoint) / "config.json"
    if not config.is_file():
        return None
    qc = json.loads(config.read_text()).get("quantization_config") or {}
    return qc.get("quant_method")


def load_kwargs(method: str | None, mode: str) -> dict:
    """from_pretrained's quantization arguments for `mode`. Packed asks for the quantized
    kernels where Transformers has them; decompressed dequantizes at load."""
    if method == "compressed-tensors":
        from transformers import CompressedTensorsConfig

        if mode == DECOMPRESSED:
            return {"quantization_config": CompressedTensorsConfig(dequantize=True)}
        return {"quantization_config": CompressedTensorsConfig(use_optimized_inference=True)}
    if method == "fp8" and mode == DECOMPRESSED:
        from transformers import FineGrainedFP8Config

        return {"quantization_config": FineGrainedFP8Config(dequantize=True)}
    if method in ("gptq", "awq") and mode == DECOMPRESSED:
        raise WeightsPathError(
            f"weights: decompressed: Transformers has no dequantize-on-load for {method} "
            "checkpoints (they run on GPTQModel's packed kernels); use weights: packed"
        )
    return {}  # unquantized, GGUF (always dequantized), or the library's own packed default


def held_bytes(model) -> int:
    """Bytes the model's parameters and buffers hold, each tensor once (tied weights)."""
    seen = {(t.device, t.data_ptr(), t.nbytes) for t in [*model.parameters(), *model.buffers()]}
    return sum(nbytes for _, _, nbytes in seen)


def checkpoint_bytes(checkpoint: str) -> int:
    """The weight files' bytes on disk (safetensors, else GGUF, else PyTorch bins)."""
    for pattern in ("*.safetensors", "*.gguf", "*.bin"):
        files = list(Path(checkpoint).glob(pattern))
        if files:
            return sum(f.stat().st_size for f in files)
    return 0


def dense_bytes(config, dtype) -> int:
    """The same architecture with every weight dense in the load dtype (built on the meta
    device: nothing allocated); a tied weight once, buffers (rotary tables) at their own dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        shape = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return sum(t.nbytes for t in [*shape.parameters(), *shape.buffers()])


def linear_classes(model) -> str:
    """The classes of the linear layers, e.g. "Linear x197" or "CompressedTensorsFP8Linear x196,
    Linear x1": a packed path shows in the kernels' own classes."""
    import torch

    names = Counter(
        type(m).__name__
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) or type(m).__name__.endswith("Linear")
    )
    return ", ".join(f"{name} x{n}" for name, n in sorted(names.items()))


def decide_path(method: str | None, held: int, on_disk: int, dense: int) -> str:
    """`packed` where the held bytes match the checkpoint's, `decompressed` where they match
    the dense size, `unquantized` for a checkpoint without quantization, else `unclear`."""
    if method is None:
        return "unquantized"
    off = {
        PACKED: abs(held - on_disk) / on_disk if on_disk else float("inf"),
        DECOMPRESSED: abs(held - dense) / dense,
    }
    path = min(off, key=off.get)
    return path if off[path] <= TOLERANCE else "unclear"


def first_forward(model) -> None:
    """One token through the model: compressed-tensors decompresses on the first forward, so
    the form the requests run on shows only after one."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), use_cache=False)


def check_path(mode: str, method: str | None, path: str, sizes: dict) -> None:
    """Fail the cell where the weights are not in the form asked for (`either` accepts both)."""
    if method is None or mode == EITHER or path == mode:
        return
    mib = {k: f"{v / 2**20:.1f} MiB" for k, v in sizes.items()}
    raise WeightsPathError(
        f"weights: {mode} asked, but the {method} checkpoint's weights are {path} after a "
        f"forward pass (held {mib['held']}, at load {mib['held_at_load']}; checkpoint "
        f"{mib['checkpoint']}, dense {mib['dense']}): Transformers has no packed kernel for "
        f"this scheme here; set weights: {EITHER} to measure it anyway (marked decompressed)"
    )


def weight_facts(mode: str, method: str | None, path: str, sizes: dict, classes: str) -> dict:
    """The start-up facts: the path, the sizes behind the decision, the layer classes."""
    how = f"held bytes after a forward pass vs checkpoint and dense size (±{TOLERANCE:.0%})"
    gib = {
        "weights_held_gib": ("held", "unique tensor storages (quantized: after a forward)"),
        "weights_held_at_load_gib": ("held_at_load", "the same, right after from_pretrained"),
        "checkpoint_gib": (
            "checkpoint",
            "size of the checkpoint's weight files on disk (a weightless layout: its random "
            "tensors)",
        ),
        "dense_gib": ("dense", "parameter count of the architecture x bytes of the load dtype"),
    }
    facts = {
        key: {"value": sizes[name] / 2**30, "unit": "GiB", "method": method_}
        for key, (name, method_) in gib.items()
    }
    return {
        "weights_load_path": {"value": path, "unit": "", "method": how},
        "weights_mode": {"value": mode, "unit": "", "method": "the engine's `weights` setting"},
        "quant_method": {"value": method or "none", "unit": "", "method": "config.json"},
        "linear_classes": {"value": classes, "unit": "", "method": "classes of Linear modules"},
        **facts,
    }
