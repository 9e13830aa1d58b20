rule aggregate:
    input:
        bench=lambda w: [p for s in SCENARIOS for p in cell_path("bench", f"{s}.json")],
        facts=lambda w: cell_path("bench", "engine.json"),
        quality=eval_inputs,
        samples=lambda w: [
            p.replace("quality.json", "samples.jsonl") for p in eval_inputs(w)
        ],
        quant=lambda w: sorted(
            {
                f"{RESULTS}/quantized/{c.model}/{c.quantization}/quant.json"
                for c in CELLS
            }
        ),
    output:
        index=report(
            f"{REPORT}/index.html", caption="../report/index.rst", category="Overview"
        ),
        requests=report(
            f"{REPORT}/requests.csv",
            caption="../report/requests.rst",
            category="Tables",
        ),
        engine_md=report(
            f"{REPORT}/engine.md", caption="../report/engine.rst", category="Tables"
        ),
        quality_md=report(
            f"{REPORT}/quality.md", caption="../report/quality.rst", category="Tables"
        ),
        checkpoints_md=report(
            f"{REPORT}/checkpoints.md",
            caption="../report/checkpoints.rst",
            category="Tables",
        ),
        gate_md=report(
            f"{REPORT}/gate.md", caption="../report/gate.rst", category="Quality"
        ),
        frontier_md=report(
            f"{REPORT}/frontier.md",
            caption="../report/frontier.rst",
            category="Quality",
        ),
        frontier_plot=report(
            f"{REPORT}/frontier.png",
            caption="../report/frontier_plot.rst",
            category="Quality",
        ),
        quality_files=[
            f"{REPORT}/{table}.{ext}"
            for table in ("gate", "frontier")
            for ext in ("csv", "html")
        ]
        + [f"{REPORT}/frontier.svg"],
        # every scenario's tables (.md) and plots, with their captions
        scenarios=[
            report(
                f"{REPORT}/{file}", caption=SCENARIO_CAPTIONS[file], category=category
            )
            for file, _, category in SCENARIO_REPORT
        ],
        tables=[
            f"{REPORT}/{table}.{ext}"
            for table in REPORT_TABLES
            for ext in ("csv", "html")
        ],
    log:
        f"{RESULTS}/logs/aggregate.log",
    conda:
        "../envs/transformers.yaml"
    container:
        CPU_IMAGE
    params:
        # the gate, published check and frontier read these (quantbench/quality/report.py)
        config={
            k: config.get(k)
            for k in ("evaluation", "models", "quantizations", "benchmark")
        },
    script:
        "../scripts/aggregate.py"


rule compare_published:
    input:
        requests=f"{REPORT}/requests.csv",
    output:
        md=report(
            f"{REPORT}/published.md",
            caption="../report/published.rst",
            category="Published",
        ),
        csv=f"{REPORT}/published.csv",
        html=f"{REPORT}/published.html",
    log:
        f"{RESULTS}/logs/compare_published.log",
    conda:
        "../envs/transformers.yaml"
    container:
        CPU_IMAGE
    params:
        models=config["models"],
        quantizations=config["quantizations"],
        engines=config["engines"],
    script:
        "../scripts/compare_published.py"
