# The quantize rules: one base rule, and for each method a few lines that route the
# quantizations naming it to a copy of it (`use rule quantize_base as quantize_<method>`). The
# built-in baseline and llm-compressor are here; other methods are rules/quantize_<method>.smk.
# What a method is (its checkpoint format, config keys, environment) is declared once, by its
# class in quantbench/quant/: see docs/adding-a-quant.md.


rule quantize_base:
    input:
        model=f"{RESULTS}/models/{{model}}/model.json",
    output:
        f"{RESULTS}/quantized/{{model}}/{{quant}}/quant.json",
    log:
        f"{RESULTS}/logs/quantize/{{model}}/{{quant}}.log",
    wildcard_constraints:
        quant="(?!)",  # matches nothing: each method's rule routes its own quantizations
    conda:
        quant_env
    container:
        CPU_IMAGE
    params:
        spec=quant_params,
        format=quant_format_of,
        calibration=config["calibration"],
    script:
        "../scripts/quantize.py"


use rule quantize_base as quantize_bf16 with:
    wildcard_constraints:
        quant=quants_of("bf16"),


use rule quantize_base as quantize_llmcompressor with:
    wildcard_constraints:
        quant=quants_of("llmcompressor"),
