# Quality with lm-evaluation-harness: same tasks, samples, seed and settings for every
# quantization of a model. A served engine is evaluated through its own server, started by
# this job (the benchmark job's server is gone by then; see docs/failures.md, "Job shape").


rule evaluate:
    input:
        launch=f"{RESULTS}/serve/{{model}}/{{quant}}/{{engine}}/launch.json",
    output:
        quality=f"{RESULTS}/eval/{{model}}/{{quant}}/{{engine}}/quality.json",
        samples=f"{RESULTS}/eval/{{model}}/{{quant}}/{{engine}}/samples.jsonl",
    log:
        main=f"{RESULTS}/logs/evaluate/{{model}}/{{quant}}/{{engine}}.log",
        server=f"{RESULTS}/logs/server-eval/{{model}}/{{quant}}/{{engine}}.log",
    conda:
        eval_env
    container:
        engine_image
    threads: lambda wildcards: workflow.cores  # at scheduling: --unlock needs no -c
    resources:
        gpu=gpus,
    params:
        settings=engine_settings,
        evaluation=config["evaluation"],
    script:
        "../scripts/evaluate.py"
