# One rule per quantization method. Each declares its checkpoint format (for the
# engine-compatibility table) and the config keys it takes; its wildcard constraint routes the
# quantizations that name its method to it. The built-in baseline and llm-compressor live here;
# other methods are rules/quantize_<method>.smk (gguf, prequantized, gptqmodel): see
# docs/adding-a-quant.md.


register_quant_rule("bf16", format="bf16")


rule quantize_bf16:
    input:
        model=f"{RESULTS}/models/{{model}}/model.json",
    output:
        f"{RESULTS}/quantized/{{model}}/{{quant}}/quant.json",
    log:
        f"{RESULTS}/logs/quantize/{{model}}/{{quant}}.log",
    wildcard_constraints:
        quant=quants_of("bf16"),
    conda:
        "../envs/transformers.yaml"
    container:
        CPU_IMAGE
    params:
        spec=quant_params,
        format="bf16",
        calibration=config["calibration"],
    script:
        "../scripts/quantize_bf16.py"


# scheme: a compressed-tensors preset; algorithm: rtn | gptq | awq (AWQ smoothing + RTN);
# bits / group_size: override the preset's integer weights (group_size -1: per channel).
register_quant_rule(
    "llmcompressor",
    format="compressed-tensors",
    params=["scheme", "algorithm", "ignore", "bits", "group_size"],
)


rule quantize_llmcompressor:
    input:
        model=f"{RESULTS}/models/{{model}}/model.json",
    output:
        f"{RESULTS}/quantized/{{model}}/{{quant}}/quant.json",
    log:
        f"{RESULTS}/logs/quantize/{{model}}/{{quant}}.log",
    wildcard_constraints:
        quant=quants_of("llmcompressor"),
    conda:
        "../envs/quantize.yaml"
    container:
        CPU_IMAGE
    params:
        spec=quant_params,
        format="compressed-tensors",
        calibration=config["calibration"],
    script:
        "../scripts/quantize_llmcompressor.py"
