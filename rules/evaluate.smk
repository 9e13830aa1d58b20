# Quality with lm-evaluation-harness: same tasks, samples, seed and settings for every
# quantization of a model.


rule evaluate:
    input:
        launch=f"{RESULTS}/serve/{{model}}/{{quant}}/{{engine}}/launch.json",
    output:
        quality=f"{RESULTS}/eval/{{model}}/{{quant}}/{{engine}}/quality.json",
        samples=f"{RESULTS}/eval/{{model}}/{{quant}}/{{engine}}/samples.jsonl",
    log:
        f"{RESULTS}/logs/evaluate/{{model}}/{{quant}}/{{engine}}.log",
    conda:
        "../envs/eval.yaml"
    threads: workflow.cores
    resources:
        gpu=gpus,
    params:
        settings=engine_settings,
        evaluation=config["evaluation"],
    script:
        "../scripts/evaluate.py"
