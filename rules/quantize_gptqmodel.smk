# GPTQModel, an optional GPTQ backend writing the `gptq` format. It runs in its own environment
# (envs/gptqmodel.yaml, `--sdm conda`): it needs a newer transformers than llm-compressor allows.


register_quant_rule(
    "gptqmodel", format="gptq", params=["bits", "group_size", "desc_act", "sym"]
)


rule quantize_gptqmodel:
    input:
        model=f"{RESULTS}/models/{{model}}/model.json",
    output:
        f"{RESULTS}/quantized/{{model}}/{{quant}}/quant.json",
    log:
        f"{RESULTS}/logs/quantize/{{model}}/{{quant}}.log",
    wildcard_constraints:
        quant=quants_of("gptqmodel"),
    conda:
        "../envs/gptqmodel.yaml"
    container:
        CPU_IMAGE
    params:
        spec=quant_params,
        format="gptq",
        calibration=config["calibration"],
    script:
        "../scripts/quantize_gptqmodel.py"
