rule model:
    output:
        f"{RESULTS}/models/{{model}}/model.json",
    params:
        spec=lambda w: config["models"][w.model],
    log:
        f"{RESULTS}/logs/model/{{model}}.log",
    conda:
        "../envs/transformers.yaml"
    script:
        "../scripts/make_model.py"
