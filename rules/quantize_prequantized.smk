# A published quantized checkpoint (Hub id or local directory) used as the quantization's
# output, verified against its config.json (quantbench/quant/prequantized.py).


use rule quantize_base as quantize_prequantized with:
    wildcard_constraints:
        quant=quants_of("prequantized"),
