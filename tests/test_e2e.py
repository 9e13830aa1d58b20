"""The real workflow, end to end, on the tiny model in a temporary copy of the repository."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from quantbench.status import Status

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_PARTS = [
    "Snakefile",
    "rules",
    "scripts",
    "config",
    "data",
    "report",
    "reference",
    "quantbench",
    "envs",
]


def copy_workflow(dest: Path) -> Path:
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / part)
    return dest


def snakemake(workdir: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-c2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def dry_run(
    configfile: Path | list[Path], workdir: Path, timeout: int = 300
) -> subprocess.CompletedProcess:
    """`snakemake -n` of this repository's Snakefile with `configfile` (or several, later ones
    overriding earlier ones), in `workdir`."""
    files = configfile if isinstance(configfile, list) else [configfile]
    cmd = [sys.executable, "-m", "snakemake", "-n", "-c1", "--configfile", *map(str, files)]
    cmd += ["-s", str(ROOT / "Snakefile"), "-d", str(workdir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("wf"))
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    # The demo's w8a16 and w2-rtn cells are tests/test_trained_model.py's.
    cfg["quantizations"] = {
        q: cfg["quantizations"][q] for q in ("bf16", "fp8-dynamic", "w4a16-gptq")
    }
    cfg["benchmark"]["single"].update(input_lengths=[1, 64, 5000], output_len=16, repeats=2)
    # GPTQ needs more calibration text than the corpus holds: this cell must fail, be
    # recorded as failed, and leave the rest of the sweep alone.
    cfg["calibration"].update(num_samples=4000, seq_len=2048)
    cfg["evaluation"]["limit"] = 6
    # batch is a served engine's scenario: unsupported in-process, and left out of bf16's cell
    cfg["benchmark"]["scenarios"] = ["single", "batch", "memory"]
    cfg["benchmark"]["memory"] = {
        "input_lengths": [1, 64, 5000],
        "output_len": 16,
        "append_chunk": 5,
    }
    cfg["cells"] = [
        {
            "model": "tiny-qwen3",
            "quantization": "bf16",
            "engine": "transformers",
            "scenarios": ["single"],
        }
    ]
    (work / "test.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--configfile", "test.yaml")
    snakemake(work, "--configfile", "test.yaml", "--report", "report.html")
    return work


def test_report_has_every_cell(run):
    speed = pd.read_csv(run / "results/report/speed.csv", dtype={"speed_tok_s": str})
    assert set(speed["quantization"]) == {"bf16", "fp8-dynamic", "w4a16-gptq"}
    assert set(speed["input_len"]) == {1, 64, 5000}
    ok = speed[speed["quantization"].isin(["bf16", "fp8-dynamic"]) & (speed["input_len"] < 5000)]
    speeds = ok["speed_tok_s"].str.split(" ± ").str[0].astype(float)
    assert (speeds > 0).all() and (speeds < 1e6).all()
    assert (ok["memory_mb"].astype(float) > 10).all()
    assert set(ok["memory_method"]) <= {"process_peak_rss", "process_peak_rss_lifetime"}
    # 5000 + 16 tokens exceed the tiny model's 4096 positions: unsupported, not an error.
    long = speed[(speed["input_len"] == 5000) & (speed["quantization"] != "w4a16-gptq")]
    assert long["speed_tok_s"].str.startswith(Status.UNSUPPORTED).all()


def test_a_scenario_a_cell_leaves_out_is_skipped_not_run_or_reported(run):
    bench = run / "results/bench/tiny-qwen3"
    skipped = json.loads((bench / "bf16/transformers/batch.json").read_text())
    assert skipped["status"] == Status.SKIPPED and skipped["rows"] == []
    assert json.loads((bench / "fp8-dynamic/transformers/batch.json").read_text())["status"] == (
        "unsupported"
    )
    batch = pd.read_csv(run / "results/report/batch.csv")
    assert set(batch["quantization"]) == {"fp8-dynamic", "w4a16-gptq"}


def test_memory_scenario_rows_through_the_workflow(run):
    """The untimed memory scenario ran in the cells that did not leave it out: one row per length
    with generate()'s cache (prompt + 15 tokens), too-long lengths unsupported, the failed
    quantization's cell failed; the bf16 cell (scenarios: [single]) skipped it."""
    memory = pd.read_csv(run / "results/report/memory.csv")
    assert set(memory["quantization"]) == {"fp8-dynamic", "w4a16-gptq"}
    fp8 = memory[memory["quantization"] == "fp8-dynamic"].set_index("input_len")
    assert fp8.loc[[1, 64], "status"].eq(Status.OK).all()
    assert fp8.loc[[1, 64], "kv_tokens"].tolist() == [1 + 15, 64 + 15]
    assert fp8.loc[5000, "status"].startswith(f"{Status.UNSUPPORTED}: 5000+16 tokens exceed")
    failed = memory[memory["quantization"] == "w4a16-gptq"]["status"]
    assert failed.str.startswith(Status.FAILED).all()


def test_failed_quantization_is_recorded_and_the_sweep_goes_on(run):
    quant = json.loads((run / "results/quantized/tiny-qwen3/w4a16-gptq/quant.json").read_text())
    assert quant["status"] == Status.FAILED and "calibration text" in quant["reason"]
    speed = pd.read_csv(run / "results/report/speed.csv")
    failed = speed[speed["quantization"] == "w4a16-gptq"]
    assert failed["speed_tok_s"].str.startswith(Status.FAILED).all()
    quality = pd.read_csv(run / "results/report/quality.csv")
    assert (quality[quality["quantization"] == "w4a16-gptq"]["status"] == Status.FAILED).all()


def test_every_request_generated_exactly_n_tokens(run):
    cells = pd.read_csv(run / "results/report/requests.csv")
    ok = cells[(cells["status"] == Status.OK) & (cells["scenario"] == "single")]
    assert len(ok) == 2 * 2 * 2  # 2 quantizations x 2 lengths x 2 repeats
    assert (ok["output_tokens"] == 16).all()
    assert (ok["prompt_tokens"] == ok["input_len"]).all()
    # speed = (prompt + generated) / time; decode speed = generated / time
    expected = (ok["prompt_tokens"] + 16) / ok["e2e_s"]
    assert list(ok["speed_tok_s"]) == pytest.approx(list(expected))
    assert list(ok["decode_speed_tok_s"]) == pytest.approx(list(16 / ok["e2e_s"]))
    assert (ok["ttft_ms"] > 0).all() and (ok["ttft_ms"] < ok["e2e_s"] * 1000).all()


def test_quality_scores_from_lm_eval(run):
    quality = pd.read_csv(run / "results/report/quality.csv")
    good = quality[quality["status"] == Status.OK]
    assert set(good["task"]) == {"qb_mc", "qb_gen"}
    assert (good["n"] == 6).all()
    values = good["score"].str.split(" ± ").str[0].astype(float)
    assert values.between(0, 1).all()
    samples = (run / "results/eval/tiny-qwen3/bf16/transformers/samples.jsonl").read_text()
    assert len(samples.splitlines()) == 12


def test_provenance_in_result_files(run):
    doc = json.loads((run / "results/bench/tiny-qwen3/bf16/transformers/single.json").read_text())
    prov = doc["provenance"]
    assert prov["engine"] == "transformers" and prov["engine_version"].startswith("5.")
    assert prov["torch_version"].startswith("2.13")
    assert prov["device_name"] and prov["timestamp"]
    assert prov["settings"]["scenarios"]["single"]["output_len"] == 16
    assert len(doc["records"][0]["token_times"]) == 16


def test_checkpoint_facts_and_report_files(run):
    ck = pd.read_csv(run / "results/report/checkpoints.csv").set_index("quantization")
    assert ck.loc["fp8-dynamic", "compression_ratio"] > 1.0
    assert ck.loc["bf16", "compression_ratio"] == 1.0
    assert (run / "results/report/speed_vs_input.png").stat().st_size > 10_000
    html = (run / "report.html").read_text(errors="ignore")
    assert "speed_vs_input.png" in html
    assert "| tiny-qwen3 |" in (run / "results/report/speed.md").read_text()
