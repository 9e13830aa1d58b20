"""`bf16`: the unquantized baseline, used in place (no copy)."""

from quantbench.quant import QuantMethod, register_quant_method


@register_quant_method("bf16")
class BF16(QuantMethod):
    format = "bf16"

    def quantize(self, src, dst, calibration):
        return {"path": str(src), "scheme": "BF16", "weight_bits": 16, "group_size": None}
