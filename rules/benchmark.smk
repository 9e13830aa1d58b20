# One job per (model, quantization, engine): load once, run the scenarios one after another,
# one result file each. It takes every core so no other job disturbs the timings.


rule benchmark:
    input:
        launch=f"{RESULTS}/serve/{{model}}/{{quant}}/{{engine}}/launch.json",
    output:
        scenarios=[
            f"{RESULTS}/bench/{{model}}/{{quant}}/{{engine}}/{s}.json"
            for s in SCENARIOS
        ],
        facts=f"{RESULTS}/bench/{{model}}/{{quant}}/{{engine}}/engine.json",
    log:
        main=f"{RESULTS}/logs/benchmark/{{model}}/{{quant}}/{{engine}}.log",
        server=f"{RESULTS}/logs/server/{{model}}/{{quant}}/{{engine}}.log",
    conda:
        engine_env
    container:
        engine_image
    threads: lambda wildcards: workflow.cores  # at scheduling: --unlock needs no -c
    resources:
        gpu=gpus,
    params:
        settings=engine_settings,
        scenarios=scenario_settings,
        skipped=skipped_scenarios,
        unsupported=lambda w: cell_options(w).get("unsupported"),
    script:
        "../scripts/benchmark.py"
