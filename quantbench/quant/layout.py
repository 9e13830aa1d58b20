"""`layout`: a quantized checkpoint *layout* without weights, for speed-only runs of dummy
models on vLLM / SGLang (and, for FP8, Transformers). It writes the model's config.json with the
quantization_config of a published checkpoint (Qwen/Qwen3-8B-AWQ, Qwen/Qwen3-8B-FP8, a GPTQ
Int4/Int8) and its tokenizer; the engine (vLLM / SGLang with `--load-format dummy`, Transformers
through quantbench/engines/transformers/layout_weights.py) builds the quantized tensors (packed
int4, FP8 blocks, scales) and fills them with random values. Kernels, memory and speed are those
of the published format; there are no weights to measure on disk, so size is not reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from quantbench.quant import QuantMethod, has_weight_files, register_quant_method

# quantization_config blocks as the published Qwen3 checkpoints write them.
LAYOUTS = {
    "awq": {
        "quant_method": "awq",
        "bits": 4,
        "group_size": 128,
        "zero_point": True,
        "version": "gemm",
        "modules_to_not_convert": None,
    },
    "fp8": {
        "quant_method": "fp8",
        "fmt": "e4m3",
        "activation_scheme": "dynamic",
        "weight_block_size": [128, 128],
    },
    "gptq": {
        "quant_method": "gptq",
        "bits": 4,
        "group_size": 128,
        "desc_act": False,
        "sym": True,
        "damp_percent": 0.01,
        "true_sequential": True,
    },
}


@register_quant_method("layout")
class Layout(QuantMethod):
    """params: `format` (awq | fp8 | gptq); for gptq, `bits` (4 or 8); for gptq / awq, `backend`."""

    format = None  # the entry's own `format`
    settings = {
        "format": {
            "type": "string",
            "enum": sorted(LAYOUTS),
            "description": "layout: the published checkpoint format whose layout is written",
        },
        "bits": {"type": "integer", "enum": [2, 3, 4, 8], "description": "layout (gptq): bits"},
        "backend": {
            "type": "string",
            "description": "layout (gptq, awq): GPTQModel's kernel for Transformers (e.g. "
            "triton for gptq, gemm_triton for awq), written into quantization_config; default: "
            "its choice",
        },
    }
    required_settings = ("format",)
    # `backend` picks a GPTQModel kernel: FP8 layouts load on Transformers' own quantizer.
    constraints = (
        {
            "if": {"properties": {"format": {"const": "fp8"}}, "required": ["format"]},
            "then": {"not": {"required": ["backend"]}},
        },
    )
    weightless = True

    def quantize(self, src: Path, dst: Path, calibration: dict) -> dict:
        fmt = self.params["format"]
        if fmt not in LAYOUTS:
            raise ValueError(f"layout format {fmt!r}: choose one of {sorted(LAYOUTS)}")
        if has_weight_files(src):
            raise ValueError(
                "method `layout` is for dummy models (no weights): this model has weights; "
                "quantize it with a real method (llmcompressor, gptqmodel, gguf)"
            )
        qc = dict(LAYOUTS[fmt])
        if fmt == "gptq":
            qc["bits"] = int(self.params.get("bits", 4))
        if self.params.get("backend"):  # gptq / awq only (constraints)
            qc["backend"] = self.params["backend"]
        shutil.copytree(src, dst)
        config = json.loads((dst / "config.json").read_text())
        config["quantization_config"] = qc
        (dst / "config.json").write_text(json.dumps(config, indent=2))
        block = qc.get("weight_block_size")
        return {
            "scheme": f"{fmt} layout, random weights",
            "weight_bits": qc.get("bits", 8),
            "group_size": qc.get("group_size") or (f"{block[0]}x{block[1]}" if block else None),
            "calibration": None,
            "weightless": True,  # the engine fills the tensors (--load-format dummy)
        }
