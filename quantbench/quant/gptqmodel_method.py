"""GPTQModel (optional backend): GPTQ checkpoints in the `gptq` format (quant_method "gptq" in
config.json) that vLLM/SGLang run with gptq or gptq_marlin kernels.

It needs its own environment (envs/gptqmodel.yaml): GPTQModel pulls a newer transformers than
llm-compressor allows in the main one. On a CPU-only machine it quantizes on CPU; set
GPTQMODEL_CPU_WORKERS to the cores to use (defaults to all of them here).
"""

from __future__ import annotations

import os
import shutil

from quantbench.quant import QuantEnv, QuantMethod, ensure_weights, register_quant_method
from quantbench.quant.calibration import calibration_facts, calibration_token_ids


@register_quant_method("gptqmodel")
class GPTQModelMethod(QuantMethod):
    """params: bits (2, 3, 4, 8; default 4), group_size (default 128), desc_act (act-order,
    default false), sym (default true)."""

    format = "gptq"
    settings = {
        "bits": {"type": "integer", "enum": [2, 3, 4, 8], "default": 4,
                 "description": "gptqmodel: weight bits"},
        "group_size": {"type": "integer", "minimum": -1, "default": 128,
                       "description": "gptqmodel: group size (-1: per channel)"},
        "desc_act": {"type": "boolean", "default": False,
                     "description": "gptqmodel: activation order"},
        "sym": {"type": "boolean", "default": True, "description": "gptqmodel: symmetric"},
    }  # fmt: skip
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
        from gptqmodel import GPTQModel, QuantizeConfig
        from transformers import AutoTokenizer

        torch.manual_seed(calibration["seed"])
        bits = self.params.get("bits", 4)
        group = self.params.get("group_size", 128)
        qcfg = QuantizeConfig(
            bits=bits,
            group_size=group,
            desc_act=self.params.get("desc_act", False),
            sym=self.params.get("sym", True),
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
            model.quantize(samples, batch_size=1)
            model.save(str(dst))
            tokenizer.save_pretrained(dst)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {
            "scheme": f"W{bits}A16 GPTQ",
            "algorithm": "gptq",
            "weight_bits": bits,
            "group_size": group,
            "calibration": calibration_facts(calibration),
        }
