# A quantized layout without weights for speed-only runs of dummy models: the served engine
# fills the quantized tensors with random values (quantbench/quant/layout.py).


use rule quantize_base as quantize_layout with:
    wildcard_constraints:
        quant=quants_of("layout"),
