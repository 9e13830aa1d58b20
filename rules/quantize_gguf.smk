# GGUF through llama.cpp's own converter and llama-quantize (Q8_0 needs no compiled tool; K-quants
# build llama-quantize once from the llama-cpp-python sdist's vendored tree: see
# quantbench/quant/gguf_method.py).


register_quant_rule("gguf", format="gguf", params=["type", "fallback_pre_tokenizer"])


rule quantize_gguf:
    input:
        model=f"{RESULTS}/models/{{model}}/model.json",
    output:
        f"{RESULTS}/quantized/{{model}}/{{quant}}/quant.json",
    log:
        f"{RESULTS}/logs/quantize/{{model}}/{{quant}}.log",
    wildcard_constraints:
        quant=quants_of("gguf"),
    conda:
        "../envs/gguf.yaml"
    container:
        CPU_IMAGE
    params:
        spec=quant_params,
        format="gguf",
        calibration=config["calibration"],
    script:
        "../scripts/quantize_gguf.py"
