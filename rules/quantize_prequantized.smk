# A published quantized checkpoint (Hub id or local directory) used as the quantization's output.
# Its format is stated in the config entry, so cells are checked at parse time; the job verifies
# it against the checkpoint's config.json.


# format=None: each entry's own `format:` is its checkpoint format (quantbench.plan.quant_format).
register_quant_rule("prequantized", format=None, params=["id", "revision", "format"])


rule quantize_prequantized:
    input:
        model=f"{RESULTS}/models/{{model}}/model.json",
    output:
        f"{RESULTS}/quantized/{{model}}/{{quant}}/quant.json",
    log:
        f"{RESULTS}/logs/quantize/{{model}}/{{quant}}.log",
    wildcard_constraints:
        quant=quants_of("prequantized"),
    conda:
        "../envs/transformers.yaml"
    container:
        CPU_IMAGE
    params:
        spec=quant_params,
        format=lambda w: config["quantizations"][w.quant]["format"],
        calibration=config["calibration"],
    script:
        "../scripts/quantize_prequantized.py"
