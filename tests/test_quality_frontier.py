"""Pareto front on a hand-made set, the frontier table's ratios, and the plot files."""

import math

import pandas as pd
import pytest

from quantbench.quality.frontier import (
    FRONTIER_COLUMNS,
    frontier_table,
    pareto_front,
    plot_frontier,
)


def test_pareto_front_hand_made():
    df = pd.DataFrame(
        {
            "quality": [0.00, -0.01, -0.02, -0.20, -0.01, -0.30, 0.10],
            "speed": [1.0, 1.5, 1.4, 2.0, 1.5, 1.9, math.nan],
            "memory": [1.0, 0.6, 0.7, 0.3, 0.6, 0.3, 0.1],
        },
        index=list("ABCDEFG"),
    )
    front = pareto_front(df)
    # A best quality; B and its exact tie E; D fastest and smallest. C is worse than B on every
    # axis; F ties D on memory but is worse on quality and speed; G has no speed.
    assert front[front].index.tolist() == ["A", "B", "D", "E"]
    assert front.dtype == bool and front.index.equals(df.index)


def test_pareto_single_axes():
    df = pd.DataFrame({"quality": [1, 3, 2], "memory": [5, 9, 1]})
    assert pareto_front(df, maximize=["quality"], minimize=[]).tolist() == [False, True, False]
    assert pareto_front(df, maximize=[], minimize=["memory"]).tolist() == [False, False, True]
    assert pareto_front(df, maximize=["quality"], minimize=["memory"]).tolist() == [
        False,
        True,
        True,
    ]


def _inputs():
    quality = pd.DataFrame(
        [
            # engine, quantization, delta, ci_low, ci_high, verdict
            ("vllm", "bf16", 0.0, 0.0, 0.0, "baseline"),
            ("vllm", "fp8", -0.005, -0.02, 0.01, "pass"),
            ("vllm", "int4", -0.15, -0.2, -0.1, "collapse"),
            ("vllm", "int8", -0.03, -0.05, -0.01, "inconclusive"),
        ],
        columns=["engine", "quantization", "delta", "ci_low", "ci_high", "verdict"],
    ).assign(model="m", task="hellaswag", baseline_suspect=False)
    speed = pd.DataFrame(
        [
            # repeats averaged: bf16 at length 1 = 100, fp8 = 150, int4 = 200, int8 = 120
            (e, qn, length, s, "ok")
            for e in ("vllm", "sglang")
            for qn, base in (("bf16", 100), ("fp8", 150), ("int4", 200), ("int8", 120))
            for length, s in ((1, base - 10), (1, base + 10), (4096, base / 2), (1, -1))
        ],
        columns=["engine", "quantization", "input_len", "speed_tok_s", "status"],
    ).assign(model="m")
    speed.loc[speed["speed_tok_s"] < 0, "status"] = "failed"  # dropped
    memory = pd.DataFrame(
        [
            (e, qn, length, mem)
            for e in ("vllm", "sglang")
            for qn, m in (("bf16", 1000), ("fp8", 600), ("int4", 400), ("int8", 700))
            for length, mem in ((1, m), (1, m - 50), (4096, m * 3))
        ],
        columns=["engine", "quantization", "input_len", "peak_mem_mb"],
    ).assign(model="m")
    kv = pd.DataFrame(
        {"engine": "vllm", "quantization": ["bf16", "fp8"], "kv_cache_tokens": [1000, 2500]}
    ).assign(model="m")
    return quality, speed, memory, kv


def test_frontier_table_ratios_and_pareto():
    quality, speed, memory, kv = _inputs()
    t = frontier_table(quality, speed, memory, kv)
    assert list(t.columns) == FRONTIER_COLUMNS
    assert len(t) == 8 and (t["input_len"] == 1).all()  # smallest input length by default
    v = t[t.engine == "vllm"].set_index("quantization")
    assert v.loc["fp8", "speed_ratio"] == pytest.approx(1.5)
    assert v.loc["int8", "speed_ratio"] == pytest.approx(1.2)
    assert v.loc["int4", "memory_ratio"] == pytest.approx(0.4)  # peak of 400 and 350 over 1000
    assert v.loc["fp8", "kv_ratio"] == pytest.approx(2.5)
    assert math.isnan(v.loc["int4", "kv_ratio"])
    assert v.loc["fp8", "quality_ci_low"] == -0.02 and v.loc["int4", "verdict"] == "collapse"
    # int8 is slower, larger and worse than fp8: dominated; the other three trade off.
    assert v["pareto"].to_dict() == {"bf16": True, "fp8": True, "int4": True, "int8": False}
    # sglang has no quality rows of its own: it borrows vllm's for the same checkpoints.
    s = t[t.engine == "sglang"].set_index("quantization")
    assert (s["quality_engine"] == "vllm").all()
    assert s.loc["int4", "quality_delta"] == -0.15


def test_frontier_at_other_length_and_task_choice():
    quality, speed, memory, _ = _inputs()
    t = frontier_table(quality, speed, memory, input_len=4096)
    v = t[t.engine == "vllm"].set_index("quantization")
    assert v.loc["fp8", "speed_ratio"] == pytest.approx(1.5)
    assert v.loc["bf16", "memory"] == 3000
    two = pd.concat([quality, quality.assign(task="other")])
    with pytest.raises(ValueError, match="choose one"):
        frontier_table(two, speed, memory)
    assert (frontier_table(two, speed, memory, task="other")["task"] == "other").all()


def test_plot_frontier_writes_png_and_svg(tmp_path):
    quality, speed, memory, kv = _inputs()
    table = frontier_table(quality, speed, memory, kv)
    png, svg = tmp_path / "out" / "frontier.png", tmp_path / "out" / "frontier.svg"
    plot_frontier(table, png, svg)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = svg.read_text()
    assert "<svg" in text and "int4 (collapse)" in text
    assert sorted(p.name for p in png.parent.iterdir()) == ["frontier.png", "frontier.svg"]


def test_plot_frontier_empty_table(tmp_path):
    plot_frontier(pd.DataFrame(columns=FRONTIER_COLUMNS), tmp_path / "f.png", tmp_path / "f.svg")
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.svg").stat().st_size > 0
