# A quantized layout without weights (config.json + quantization_config) for speed-only runs of
# dummy models: the served engine fills the quantized tensors with random values.


# format=None: each entry's own `format:` (awq | fp8 | gptq) is its checkpoint format.
register_quant_rule("layout", format=None, params=["format", "bits"], weightless=True)


rule quantize_layout:
    input:
        model=f"{RESULTS}/models/{{model}}/model.json",
    output:
        f"{RESULTS}/quantized/{{model}}/{{quant}}/quant.json",
    log:
        f"{RESULTS}/logs/quantize/{{model}}/{{quant}}.log",
    wildcard_constraints:
        quant=quants_of("layout"),
    conda:
        "../envs/transformers.yaml"
    container:
        CPU_IMAGE
    params:
        spec=quant_params,
        format=lambda w: config["quantizations"][w.quant]["format"],
        calibration=config["calibration"],
    script:
        "../scripts/quantize_layout.py"
