"""A new benchmark scenario is one module and a config entry: the worked example of
docs/adding-a-scenario.md, taken from that page, added to a copy of the workflow (nothing else
in it changes) and run through the DAG to the report on the tiny model with the Transformers
engine."""

import json
import subprocess
import sys

import pandas as pd
import yaml
from test_e2e import ROOT, copy_workflow, snakemake
from test_engine_plugin import changed_files, doc_files

DOC = ROOT / "docs" / "adding-a-scenario.md"
MODULE = "quantbench/scenarios/prefill.py"


def test_a_new_scenario_runs_to_the_aggregate_table(tmp_path, monkeypatch):
    files = doc_files(DOC)
    entry = yaml.safe_load(files.pop("config entry"))["benchmark"]
    assert set(files) == {MODULE}
    work = copy_workflow(tmp_path)
    (work / MODULE).write_text(files[MODULE])
    assert changed_files(work) == {MODULE}

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["models"] = {"tiny-qwen3": {"source": "tiny", "seed": 0}}
    cfg["quantizations"] = {"bf16": {"method": "bf16"}}
    cfg["benchmark"] |= entry
    cfg["benchmark"]["single"].update(input_lengths=[8], output_len=4, repeats=1, warmup=0)
    cfg["evaluation"] = {"enabled": False}

    # The copy's package (with the new module) in Snakemake and in its jobs, whose scripts
    # find the package on PYTHONPATH before the workflow's directory.
    monkeypatch.setenv("PYTHONPATH", str(work))
    # A wrong key is refused at parse time, naming it.
    bad = {**cfg, "benchmark": {**cfg["benchmark"], "prefill": {"input_length": [8]}}}
    (work / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-c1", "--configfile", "bad.yaml"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "benchmark.prefill.input_length: unknown key" in proc.stdout + proc.stderr

    (work / "test.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--configfile", "test.yaml", timeout=600)

    doc = json.loads((work / "results/bench/tiny-qwen3/bf16/transformers/prefill.json").read_text())
    assert doc["status"] == "ok", doc
    assert [r["input_len"] for r in doc["rows"]] == [8, 32]
    table = pd.read_csv(work / "results/report/prefill.csv")
    assert list(table["input_len"]) == [8, 32]
    assert set(table["engine"]) == {"transformers"}
    assert (table["status"] == "ok").all()
    assert (table["ttft_ms"] > 0).all() and (table["prefill_tok_s"] > 0).all()
    index = (work / "results/report/index.html").read_text()
    assert "Prefill: time to first token per input length" in index
    # The table is one of the aggregate rule's outputs, with the module's caption.
    snakemake(work, "--configfile", "test.yaml", "--report", "report.html", timeout=300)
    assert "Time to first token of one request for one token" in (work / "report.html").read_text()

