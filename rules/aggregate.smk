


rule aggregate:
    input:
        bench=lambda w: [p for s in SCENARIOS for p in cell_path("bench", f"{s}.json")],
        quality=eval_inputs,
        quant=lambda w: sorted(
            {f"{RESULTS}/quantized/{c.model}/{c.quant}/quant.json" for c in CELLS}
        ),
    output:
        cells=report(
            f"{REPORT}/cells.csv", caption="../report/cells.rst", category="Tables"
        ),
        speed_md=report(
            f"{REPORT}/speed.md", caption="../report/speed.rst", category="Tables"
        ),
        speed_html=report(
            f"{REPORT}/speed.html", caption="../report/speed.rst", category="Tables"
        ),
        speed_csv=f"{REPORT}/speed.csv",
        quality_md=report(
            f"{REPORT}/quality.md", caption="../report/quality.rst", category="Tables"
        ),
        quality_html=f"{REPORT}/quality.html",
        quality_csv=f"{REPORT}/quality.csv",
        checkpoints=report(
            f"{REPORT}/checkpoints.md",
            caption="../report/checkpoints.rst",
            category="Tables",
        ),
        checkpoints_csv=f"{REPORT}/checkpoints.csv",
        checkpoints_html=f"{REPORT}/checkpoints.html",
        plot=report(
            f"{REPORT}/speed_vs_input.png",
            caption="../report/speed_plot.rst",
            category="Plots",
        ),
    log:
        f"{RESULTS}/logs/aggregate.log",
    conda:
        "../envs/transformers.yaml"
    script:
        "../scripts/aggregate.py"
