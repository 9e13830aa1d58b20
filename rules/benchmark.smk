# One job per (model, quantization, engine): load once, run the scenarios one after another,
# one result file each. It takes every core so no other job disturbs the timings.


rule benchmark:
    input:
        launch=f"{RESULTS}/serve/{{model}}/{{quant}}/{{engine}}/launch.json",
    output:
        [f"{RESULTS}/bench/{{model}}/{{quant}}/{{engine}}/{s}.json" for s in SCENARIOS],
    log:
        f"{RESULTS}/logs/benchmark/{{model}}/{{quant}}/{{engine}}.log",
    conda:
        "../envs/transformers.yaml"
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        settings=engine_settings,
        scenarios=scenario_settings,
    script:
        "../scripts/benchmark.py"
