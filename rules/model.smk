rule model:
    output:
        f"{RESULTS}/models/{{model}}/model.json",
    log:
        f"{RESULTS}/logs/model/{{model}}.log",
    conda:
        "../envs/transformers.yaml"
    container:
        CPU_IMAGE
    params:
        spec=lambda w: config["models"][w.model],
    script:
        "../scripts/make_model.py"
