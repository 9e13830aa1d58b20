# GGUF through llama.cpp's own converter and llama-quantize (quantbench/quant/gguf_method.py).


use rule quantize_base as quantize_gguf with:
    wildcard_constraints:
        quant=quants_of("gguf"),
