"""GPTQModel (optional backend): GPTQ checkpoints in the `gptq` format (quant_method "gptq" in
config.json) that vLLM/SGLang run with gptq or gptq_marlin kernels; with `format: awq`, AWQ
checkpoints quantized by GPTQModel's own AWQ in AutoAWQ's GEMM layout (quant_method "awq",
version "gemm") that vLLM/SGLang run with awq or awq_marlin. Both load packed in Transformers
where GPTQModel is installed (the `transformers-gptq` engine instance).

It needs its own environment (envs/gptqmodel.yaml): GPTQModel pulls a newer transformers than
llm-compressor allows in the main one. On a CPU-only machine it quantizes on CPU; set
GPTQMODEL_CPU_WORKERS to the cores to use (defaults to all of them here).
"""

from __future__ import annotations

import os
import shutil

from quantbench.quant import QuantEnv, QuantMethod, ensure_weights, register_quant_method
from quantbench.quant.calibration import calibration_facts, calibration_token_ids

# Checkpoint format (a quantbench.compat key) -> GPTQModel's (METHOD, FORMAT) names.
ALGORITHMS = {"gptq": ("gptq", "gptq"), "awq": ("awq", "gemm")}


@register_quant_method("gptqmodel")
class GPTQModelMethod(QuantMethod):
    """params: format (gptq | awq; default gptq), bits (2, 3, 4, 8; default 4; awq: 4),
    group_size (default 128), desc_act (act-order, gptq only; default false), sym (default true
    for gptq, false for awq: AutoAWQ's GEMM layout stores zero points)."""

    format = "gptq"  # an entry's `format` overrides it (quantbench.plan.quant_format)
    settings = {
        "format": {"type": "string", "enum": list(ALGORITHMS), "default": "gptq",
                   "description": "gptqmodel: checkpoint format and algorithm: gptq, or awq "
                                  "(AutoAWQ GEMM layout)"},
        "bits": {"type": "integer", "enum": [2, 3, 4, 8], "default": 4,
                 "description": "gptqmodel: weight bits (awq: 4)"},
        "group_size": {"type": "integer", "minimum": -1, "default": 128,
                       "description": "gptqmodel: group size (-1: per channel)"},
        "desc_act": {"type": "boolean", "default": False,
                     "description": "gptqmodel: activation order (gptq only)"},
        "sym": {"type": "boolean",
                "description": "gptqmodel: symmetric (default true for gptq, false for awq)"},
    }  # fmt: skip
    # AutoAWQ's GEMM layout (and vLLM/SGLang's awq kernels) is 4-bit, without act-order.
    constraints = (
        {
            "if": {"properties": {"format": {"const": "awq"}}, "required": ["format"]},
            "then": {"properties": {"bits": {"enum": [4]}, "desc_act": {"const": False}}},
        },
    )
    environment = QuantEnv(
        "gptqmodel", ("gptqmodel",), "GPTQModel pulls transformers 5.23: its own env."
    )
    packages = ("torch", "transformers", "gptqmodel")

    @classmethod
    def calibrates(cls, params):
        return True

    def quantize(self, src, dst, calibration):
        os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(os.cpu_count() or 1))
        import torch
        from gptqmodel import BACKEND, GPTQModel, QuantizeConfig
        from transformers import AutoTokenizer

        torch.manual_seed(calibration["seed"])
        fmt = self.params.get("format", "gptq")
        bits = self.params.get("bits", 4)
        group = self.params.get("group_size", 128)
        sym = self.params.get("sym", fmt == "gptq")
        method, layout = ALGORITHMS[fmt]
        qcfg = QuantizeConfig(
            quant_method=method,
            format=layout,
            bits=bits,
            group_size=group,
            desc_act=self.params.get("desc_act", False),
            sym=sym,
        )
        scratch = dst.parent / ".gptqmodel-scratch"
        try:
            hf_dir = ensure_weights(src, scratch, calibration["seed"])
            tokenizer = AutoTokenizer.from_pretrained(hf_dir)
            samples = [
                {"input_ids": ids, "attention_mask": [1] * len(ids)}
                for ids in calibration_token_ids(tokenizer, calibration)
            ]
            model = GPTQModel.load(str(hf_dir), qcfg)
            # For AWQ GEMM, GPTQModel's default packing backend is its CUDA kernel ("AWQ: CUDA is
            # not available" without one); its torch kernel packs the same GEMM layout.
            cpu_awq = fmt == "awq" and not torch.cuda.is_available()
            backend = BACKEND.AWQ_TORCH if cpu_awq else BACKEND.AUTO
            model.quantize(samples, batch_size=1, backend=backend)
            model.save(str(dst))
            tokenizer.save_pretrained(dst)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {
            "scheme": f"W{bits}A16{'' if sym else '_ASYM'} {fmt.upper()}",
            "algorithm": fmt,
            "weight_bits": bits,
            "group_size": group,
            "symmetric": sym,
            "calibration": calibration_facts(calibration),
        }
