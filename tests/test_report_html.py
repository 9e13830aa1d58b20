"""results/report/index.html (quantbench/report_html.py) and `quantbench compare`
(quantbench/compare.py) on a small synthetic report; the page is opened in headless Chromium
(Debian's `chromium`; .ci/run installs it), screenshotted, and its DOM checked after load."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from quantbench.compare import compare_runs, load_run, to_markdown, write_comparison
from quantbench.report_html import FlagCodes, split_flags, write_index

FLAG_A = "preflight: qb_gen: prompt ends in a space; the answer may start with one"
FLAG_B = ("postrun: qb_gen: 40% of generations reached max_gen_toks=32 (threshold 5%); "
          "output tokens p50 32, p90 32")


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [3, 1, 2])
    fig.savefig(path)
    plt.close(fig)


def _cells(speeds: dict, mem: float = 600.0) -> pd.DataFrame:
    rows = []
    for quant, values in speeds.items():
        for i, v in enumerate(values):
            status = "ok" if v is not None else "failed"
            rows.append({"model": "m", "quantization": quant, "engine": "transformers",
                         "engine_version": "5.17.0", "device_name": "CPU", "scenario": "single",
                         "input_len": 256, "output_len": 64, "repeat": i, "status": status,
                         "reason": None if v is not None else "CUDA out of memory\ntrace",
                         "speed_tok_s": v, "decode_speed_tok_s": v, "peak_mem_mb": mem + i})
    return pd.DataFrame(rows)


@pytest.fixture()
def report(tmp_path) -> Path:
    out = tmp_path / "results" / "report"
    out.mkdir(parents=True)
    _cells({"bf16": [100.0, 102.0, 101.0], "w4a16": [None, None]}).to_csv(
        out / "requests.csv", index=False)
    pd.DataFrame([
        {"engine": "transformers", "model": "m", "input_len": 256, "quantization": "bf16",
         "speed_tok_s": "101.00 ± 1.00", "memory_mb": 602.0, "repeats": 3},
        {"engine": "transformers", "model": "m", "input_len": 256, "quantization": "w4a16",
         "speed_tok_s": "failed: CUDA out of memory", "memory_mb": None, "repeats": None},
        {"engine": "sglang", "model": "m", "input_len": 256, "quantization": "gguf",
         "speed_tok_s": "unsupported: no GGUF loader", "memory_mb": None, "repeats": None},
    ]).to_csv(out / "speed.csv", index=False)
    (out / "speed.md").write_text("# Speed (tokens/s) and peak memory (MB), batch 1\n")
    pd.DataFrame([
        {"model": "m", "quantization": "w4a16", "verdict": "collapse", "delta": -0.2,
         "flags": f"{FLAG_A}; {FLAG_B}"},
        {"model": "m", "quantization": "fp8", "verdict": "pass", "delta": -0.001, "flags": ""},
    ]).to_csv(out / "gate.csv", index=False)
    _png(out / "speed_vs_input.png")
    _png(out / "frontier.png")
    return out


def test_flags_split_only_between_flags():
    assert split_flags(f"{FLAG_A}; {FLAG_B}") == [FLAG_A, FLAG_B]  # FLAG_B holds its own "; "
    codes = FlagCodes()
    assert [codes.code(FLAG_A), codes.code(FLAG_B), codes.code(FLAG_A)] == ["P1", "R1", "P1"]


def test_index_is_self_contained_and_marks_cells(report):
    page = write_index(report).read_text()
    assert not re.search(r"""(src|href)=['"](?!data:|#)""", page), "a link outside the page"
    assert page.count("data:image/png;base64,") == 2
    assert 'class="st-fail"' in page and "failed: CUDA out of memory" in page
    assert 'class="st-na"' in page and 'class="st-good"' in page
    assert f'title="{FLAG_A}"' in page and ">P1</span>" in page and ">R1</span>" in page
    assert "Flag legend" in page
    assert FLAG_B not in page.split("Flag legend")[0].replace(f'title="{FLAG_B}"', "")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# After load: every table and image laid out, a header click sorts; the result lands in the DOM.
PROBE = """<script>window.addEventListener('load',function(){
var t=document.getElementById('t-speed');var th=t.tHead.rows[0].cells;var col=-1;
for(var i=0;i<th.length;i++){if(th[i].textContent==='quantization')col=i;}
th[col].click();th[col].click();
var order=Array.from(t.tBodies[0].rows).map(function(r){return r.cells[col].textContent});
var r={tables:Array.from(document.querySelectorAll('table.qb')).map(function(x){
 return {id:x.id,rows:x.tBodies[0].rows.length,h:x.getBoundingClientRect().height}}),
images:Array.from(document.images).map(function(i){return {w:i.naturalWidth,h:i.height}}),
sorted_desc:order,failed_bg:getComputedStyle(document.querySelector('td.st-fail')).backgroundColor};
var pre=document.createElement('pre');pre.id='qb-probe';pre.textContent=JSON.stringify(r);
document.body.appendChild(pre);});</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian: apt-get install chromium; .ci/run does)",
)
def test_index_renders_in_chromium(report, tmp_path):
    page = write_index(report)
    shot = tmp_path / "index.png"
    proc = _chromium("--window-size=1280,1600", f"--screenshot={shot}", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    keep = os.environ.get("QB_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "index.png")
    from PIL import Image

    pixels = Image.open(shot).convert("L").getextrema()
    assert pixels[1] - pixels[0] > 100, "a blank screenshot"

    probed = tmp_path / "probe.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium("--dump-dom", probed.as_uri()).stdout
    found = re.search(r'<pre id="qb-probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    tables = {t["id"]: t for t in result["tables"]}
    assert tables["t-speed"]["rows"] == 3 and tables["t-speed"]["h"] > 50
    assert tables["t-gate"]["rows"] == 2 and tables["t-gate"]["h"] > 30
    assert len(result["images"]) == 2 and all(i["w"] > 0 and i["h"] > 0 for i in result["images"])
    assert result["sorted_desc"] == ["w4a16", "gguf", "bf16"]
    assert result["failed_bg"] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")


def test_compare_calls_noise_and_differences(tmp_path):
    runs = (("a", [100.0, 102.0, 101.0], 600.0), ("b", [101.0, 100.0, 102.5], 700.0))
    for name, bf16, mem in runs:
        out = tmp_path / name / "report"
        out.mkdir(parents=True)
        cells = _cells({"bf16": bf16, "fp8": [150.0, 151.0] if name == "b" else [120.0, 121.0]},
                       mem)
        cells.to_csv(out / "requests.csv", index=False)
        q = tmp_path / name / "eval/m/bf16/transformers"
        q.mkdir(parents=True)
        score = {"task": "qb_mc", "metric": "acc", "filter": "none", "n": 100,
                 "value": 0.50 if name == "a" else 0.52, "stderr": 0.05}
        (q / "quality.json").write_text(json.dumps({
            "status": "ok", "scores": [score],
            "provenance": {"model": "m", "quantization": "bf16", "engine": "transformers"}}))
    a, b = load_run(tmp_path / "a"), load_run(tmp_path / "b")
    table = compare_runs(a, b)
    pick = {(r.quantization, r.metric): r.verdict for r in table.itertuples()}
    assert pick[("bf16", "speed tok/s")].startswith("within noise")
    assert pick[("fp8", "speed tok/s")].startswith("B better")
    assert pick[("bf16", "peak memory MB")].startswith("B worse")
    assert pick[("bf16", "acc (none)")].startswith("within noise")
    md = to_markdown(table, a, b)
    assert "| verdict" in md.replace("|   verdict", "| verdict") or "verdict" in md
    _, md2 = write_comparison(tmp_path / "a", tmp_path / "b/report", tmp_path / "cmp")
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == {
        "compare.md", "compare.csv", "compare.html"}


def test_compare_marks_a_failed_cell(tmp_path):
    # run a is a report written before the request rows were named requests.csv: still read
    for name, w4, csv in (("a", [90.0, 91.0], "cells.csv"), ("b", [None, None], "requests.csv")):
        out = tmp_path / name / "report"
        out.mkdir(parents=True)
        _cells({"w4a16": w4}).to_csv(out / csv, index=False)
    table = compare_runs(load_run(tmp_path / "a"), load_run(tmp_path / "b"))
    speed = table[table["metric"] == "speed tok/s"].iloc[0]
    assert speed["b"].startswith("failed: CUDA out of memory")
    assert speed["verdict"].startswith("not comparable: B failed")


def test_a_flags_column_becomes_codes_with_a_legend(tmp_path):
    from quantbench.quality.report import write_flagged_table as write_table

    long_flag = "post-run: " + "x" * 400
    df = pd.DataFrame(
        {"quantization": ["bf16", "fp8", "w4"], "score": [0.9, 0.8, 0.7]}
        | {"flags": [long_flag, long_flag, ""]}
    )
    write_table(df, tmp_path / "quality", "Quality")
    page = (tmp_path / "quality.html").read_text()
    assert "Flag legend" in page
    # the text is shown once, in the legend; rows carry its code (full text on hover)
    assert page.count(f">{long_flag}<") == 1
    assert len(re.findall(r">[A-Z]\d+</span>", page)) == 2 + 1  # two rows, the legend
    # CSV and Markdown keep the whole text
    assert (tmp_path / "quality.csv").read_text().count(long_flag) == 2
