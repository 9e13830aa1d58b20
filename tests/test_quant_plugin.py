"""A new quantization method is one rule file, its script and a config entry: the worked example
of docs/adding-a-quant.md, taken from that page, added to a copy of the workflow and run through
the DAG to the report on the tiny model."""

import json
import re

import pandas as pd
import yaml
from test_e2e import ROOT, copy_workflow, snakemake

from quantbench.status import Status

DOC = ROOT / "docs" / "adding-a-quant.md"


def doc_files() -> dict[str, str]:
    """The page's code blocks whose first line is `# file: <path>`."""
    blocks = re.findall(r"```\w*\n# file: (.+?)\n(.*?)```", DOC.read_text(), flags=re.S)
    return dict(blocks)


def test_a_new_quant_rule_runs_to_the_report(tmp_path):
    files = doc_files()
    work = copy_workflow(tmp_path)
    entry = yaml.safe_load(files.pop("config entry"))["quantizations"]
    assert set(files) == {"rules/quantize_int8rtn.smk", "scripts/quantize_int8rtn.py"}
    for path, text in files.items():
        (work / path).write_text(text)

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["quantizations"] = {"bf16": {"method": "bf16"}, **entry}
    cfg["benchmark"]["single"].update(input_lengths=[1, 32], output_len=4, repeats=1, warmup=0)
    cfg["evaluation"]["enabled"] = False
    (work / "test.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--configfile", "test.yaml", timeout=300)

    quant = json.loads((work / "results/quantized/tiny-qwen3/w8-rtn/quant.json").read_text())
    assert quant["status"] == Status.OK and quant["method"] == "int8rtn", quant.get("reason")
    ck = pd.read_csv(work / "results/report/checkpoints.csv").set_index("quantization")
    assert ck.loc["w8-rtn", "method"] == "int8rtn"
    assert ck.loc["w8-rtn", "weight_bits"] == 8
    assert ck.loc["w8-rtn", "compression_ratio"] > 1.2  # int8 Linear weights, BF16 embeddings
    speed = pd.read_csv(work / "results/report/speed.csv", dtype={"speed_tok_s": str})
    rows = speed[speed["quantization"] == "w8-rtn"]
    assert set(rows["input_len"]) == {1, 32}
    assert rows["speed_tok_s"].str.split(" ± ").str[0].astype(float).gt(0).all()
