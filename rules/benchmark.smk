# One job per (model, quantization, engine): load once, run the scenarios one after another,
# one result file each. It takes every core so no other job disturbs the timings.


rule benchmark:
    input:
        launch=f"{RESULTS}/serve/{{model}}/{{quant}}/{{engine}}/launch.json",
    output:
        [f"{RESULTS}/bench/{{model}}/{{quant}}/{{engine}}/{s}.json" for s in SCENARIOS],
    params:
        settings=engine_settings,
        scenarios=scenario_settings,
    threads: workflow.cores
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/benchmark/{{model}}/{{quant}}/{{engine}}.log",
    conda:
        "../envs/transformers.yaml"
    script:
        "../scripts/benchmark.py"
