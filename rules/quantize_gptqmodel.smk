# GPTQModel, an optional backend writing the `gptq` format (or with `format: awq` the `awq`
# format), in its own environment (quantbench/quant/gptqmodel_method.py).


use rule quantize_base as quantize_gptqmodel with:
    wildcard_constraints:
        quant=quants_of("gptqmodel"),
