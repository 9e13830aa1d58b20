# Resolve how the engine will run this cell (kernel, dtype, device or server command line).
# The server itself is started by the benchmark job, once for all its scenarios: Snakemake
# service jobs would run the scenarios concurrently against it (see docs/failures.md, "Job shape").


rule serve:
    input:
        quant=f"{RESULTS}/quantized/{{model}}/{{quant}}/quant.json",
    output:
        f"{RESULTS}/serve/{{model}}/{{quant}}/{{engine}}/launch.json",
    log:
        f"{RESULTS}/logs/serve/{{model}}/{{quant}}/{{engine}}.log",
    conda:
        "../envs/transformers.yaml"
    container:
        CPU_IMAGE
    params:
        settings=engine_settings,
        kernel=lambda w: config["quantizations"][w.quant].get("kernel"),
    script:
        "../scripts/serve.py"
