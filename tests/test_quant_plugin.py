"""A new quantization method is its module, a few-line rule and a config entry: the worked
examples of docs/adding-a-quant.md (a method of a known format, and one of a new format whose
compat rows it declares), taken from that page, added to a copy of the workflow (nothing else in
it changes) and run through the DAG to the report on the tiny model. A method without its class,
or a format without compat rows, stops `snakemake -n` naming where to declare it."""

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from test_e2e import ROOT, copy_workflow, snakemake
from test_engine_plugin import changed_files, doc_files

from quantbench.status import Status

DOC = ROOT / "docs" / "adding-a-quant.md"
KNOWN_FORMAT = {"quantbench/quant/int8rtn.py", "rules/quantize_int8rtn.smk"}
NEW_FORMAT = {"quantbench/quant/fp16.py", "rules/quantize_fp16.smk"}


def doc_entries(files: dict[str, str]) -> dict:
    return {
        **yaml.safe_load(files.pop("config entry"))["quantizations"],
        **yaml.safe_load(files.pop("config entry (new format)"))["quantizations"],
    }


def write_config(work, quantizations: dict) -> str:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["quantizations"] = {"bf16": {"method": "bf16"}, **quantizations}
    cfg["benchmark"]["single"].update(input_lengths=[1, 32], output_len=4, repeats=1, warmup=0)
    cfg["evaluation"]["enabled"] = False
    (work / "test.yaml").write_text(yaml.safe_dump(cfg))
    return "test.yaml"


def dry_run_in(work, configfile: str) -> subprocess.CompletedProcess:
    """`snakemake -n` of the copy."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "-c1", "--configfile", configfile]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)


@pytest.fixture
def doc_workflow(tmp_path, monkeypatch):
    files = doc_files(DOC)
    entries = doc_entries(files)
    assert set(files) == KNOWN_FORMAT | NEW_FORMAT
    work = copy_workflow(tmp_path)
    shutil.copytree(ROOT / "tools", work / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    for path, text in files.items():
        (work / path).write_text(text)
    assert changed_files(work) == KNOWN_FORMAT | NEW_FORMAT
    # The copy's quantbench in Snakemake and in its jobs, as an editable install of it would be.
    monkeypatch.setenv("PYTHONPATH", str(work))
    return work, entries


def test_new_quant_methods_run_to_the_report(doc_workflow):
    work, entries = doc_workflow
    snakemake(work, "--configfile", write_config(work, entries), timeout=600)

    quant = json.loads((work / "results/quantized/tiny-qwen3/w8-rtn/quant.json").read_text())
    assert quant["status"] == Status.OK and quant["method"] == "int8rtn", quant.get("reason")
    assert quant["provenance"]["settings"]["quantization"]["ignore"] == ["lm_head"]  # default
    fp16 = json.loads((work / "results/quantized/tiny-qwen3/fp16/quant.json").read_text())
    assert fp16["status"] == Status.OK and fp16["format"] == "fp16", fp16.get("reason")
    ck = pd.read_csv(work / "results/report/checkpoints.csv").set_index("quantization")
    assert ck.loc["w8-rtn", "method"] == "int8rtn"
    assert ck.loc["w8-rtn", "weight_bits"] == 8
    assert ck.loc["w8-rtn", "compression_ratio"] > 1.2  # int8 Linear weights, BF16 embeddings
    assert ck.loc["fp16", "compression_ratio"] == pytest.approx(1.0, abs=0.05)
    speed = pd.read_csv(work / "results/report/speed.csv", dtype={"speed_tok_s": str})
    for name in ("w8-rtn", "fp16"):
        rows = speed[speed["quantization"] == name]
        assert set(rows["input_len"]) == {1, 32}, name
        assert rows["speed_tok_s"].str.split(" ± ").str[0].astype(float).gt(0).all()


def test_a_new_format_plans_on_the_engines_its_rows_name(doc_workflow):
    work, entries = doc_workflow
    cfg = write_config(work, {"fp16": entries["fp16"]})
    proc = dry_run_in(work, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "quantize_fp16" in proc.stdout
    assert "results/bench/tiny-qwen3/fp16/transformers" in proc.stdout

    # The same format without its rows: refused at parse time, naming where they go.
    module = work / "quantbench/quant/fp16.py"
    text = module.read_text()
    module.write_text(re.sub(r"\n    compat = \{.*?\n", "\n", text, flags=re.S))
    proc = dry_run_in(work, cfg)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "quantizations.fp16: no engine loads checkpoint format 'fp16'" in out, out[-3000:]
    assert "`compat` on the quantization method's class (quantbench/quant/<module>.py)" in out
    assert not (work / "results").exists()


def test_an_unregistered_method_is_refused_naming_where_to_declare_it(doc_workflow):
    work, entries = doc_workflow
    (work / "quantbench/quant/int8rtn.py").unlink()  # the rule and the entry, not the class
    proc = dry_run_in(work, write_config(work, {"w8-rtn": entries["w8-rtn"]}))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "quantizations.w8-rtn.method: unknown name 'int8rtn'" in out, out[-3000:]
    assert "declared in quantbench/quant/<module>.py (@register_quant_method)" in out
    assert not (work / "results").exists()
