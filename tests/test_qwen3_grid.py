"""config/examples/qwen3_speed.yaml plans exactly the published Qwen3 speed cells, quickly."""

import time
from pathlib import Path

import yaml

from quantbench.reference import load_qwen3_speed
from tests.test_e2e import dry_run

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "examples" / "qwen3_speed.yaml"


def test_cells_match_the_published_table():
    cfg = yaml.safe_load(CONFIG.read_text())
    quant = {name: q["reference_quant"].lower() for name, q in cfg["quantizations"].items()}
    engines = cfg["engines"]
    kind = {name: e.get("kind", name) for name, e in engines.items()}
    planned = {
        (c["model"], kind[c["engine"]], quant[c["quantization"]], n): c
        for c in cfg["cells"]
        for n in c["input_lengths"]
    }
    published = load_qwen3_speed()
    expected = {(r.model, r.engine, r.quant, r.input_len): r for r in published.itertuples()}
    assert set(planned) == set(expected)  # 216 cells, no more, no fewer
    for key, row in expected.items():
        cell = planned[key]
        assert ("unsupported" in cell) == (not row.supported)
        if row.supported:
            # GPUs are the engine instance's (sglang-tp2, ...), not a cell override
            assert "tensor_parallel_size" not in cell
            assert engines[cell["engine"]].get("tensor_parallel_size", 1) == row.tp


def test_dry_run_plans_one_benchmark_job_per_published_cell(tmp_path):
    start = time.perf_counter()
    proc = dry_run(CONFIG, tmp_path)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = proc.stdout[proc.stdout.index("Job stats") :]
    counts = dict(line.split()[:2] for line in stats.splitlines()[3:] if len(line.split()) == 2)
    assert counts["benchmark"] == "46" and counts["serve"] == "46"  # 45 + Qwen3-32B on sglang-tp2
    print(f"dry run took {elapsed:.1f} s")  # the figure; the bound is 5 s
