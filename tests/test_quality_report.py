"""The aggregated quality report from hand-built result files: an injected collapse and a
template-less run must be flagged in the quality, gate and frontier tables; a BF16 cell that
misses its published score makes the model's rows suspect."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from quantbench.evaluate import cell_flags
from quantbench.quality.preflight import postrun_checks, render_preflight
from quantbench.quality.report import build_quality_report
from quantbench.reference import default_reference_dir

N = 60


def _mc(correct: list[bool], task="qb_mc") -> list[dict]:
    return [
        {
            "task": task,
            "doc_id": i,
            "filter": "none",
            "metrics": ["acc", "acc_norm"],
            "target": 0,
            "resps": [[[-1.0, False]], [[-2.0, False]]],
            "filtered_resps": [[-1.0, False], [-2.0, False]],
            "acc": float(ok),
            "acc_norm": float(ok),
        }
        for i, ok in enumerate(correct)
    ]


def _gen(answers: list[str]) -> list[dict]:
    return [
        {
            "task": "qb_gen",
            "doc_id": i,
            "filter": "first-integer",
            "metrics": ["exact_match"],
            "target": "6",
            "resps": [[a]],
            # the shipped qb_gen filter: first integer, else lm-eval's "[invalid]"
            "filtered_resps": [(re.findall(r"-?[0-9]+", a) or ["[invalid]"])[0]],
            "exact_match": float((re.findall(r"-?[0-9]+", a) or [""])[0] == "6"),
        }
        for i, a in enumerate(answers)
    ]


def _write_cell(root, model, quant, engine, samples, *, apply_chat_template=True, tok=None):
    """quality.json + samples.jsonl as evaluate_job writes them, flags from the real checks."""
    d = root / "eval" / model / quant / engine
    d.mkdir(parents=True)
    (d / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    pre = render_preflight(
        tok,
        {"qb_gen": "Question: What is 2 times 3?\nAnswer:"},
        apply_chat_template=apply_chat_template,
        enable_thinking=False,
        output_types={"qb_gen": "generate_until", "qb_mc": "multiple_choice"},
    )
    post = postrun_checks(
        samples, max_gen_toks=16, count_tokens=lambda t: len(tok.encode(t)), thresholds={}
    )
    by_task = {}
    for s in samples:
        metric = s["metrics"][0]
        by_task.setdefault((s["task"], metric, s["filter"]), []).append(s[metric])
    scores = [
        {"task": t, "metric": m, "filter": f, "value": float(np.mean(v)), "stderr": 0.01, "n": N}
        for (t, m, f), v in by_task.items()
    ]
    doc = {
        "provenance": {"model": model, "quantization": quant, "engine": engine},
        "status": "ok",
        "scores": scores,
        "preflight": pre,
        "postrun": post,
        "flags": cell_flags(pre, post),
    }
    (d / "quality.json").write_text(json.dumps(doc))
    return str(d / "quality.json"), str(d / "samples.jsonl")


@pytest.fixture(scope="module")
def tok():
    from quantbench.models import build_tokenizer

    return build_tokenizer()


def _speed(quants_speed_mem: dict, model="m", engine="vllm") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "model": model,
                "quantization": q,
                "engine": engine,
                "scenario": "single",
                "input_len": length,
                "status": "ok",
                "speed_tok_s": speed / (1 + length / 1000),
                "peak_mem_mb": mem,
            }
            for q, (speed, mem) in quants_speed_mem.items()
            for length in (1, 1024)
        ]
    )


CFG = {
    "evaluation": {"tolerance": 0.02, "alpha": 0.05, "seed": 1234},
    "models": {"m": {"source": "tiny"}},
    "quantizations": {"bf16": {"method": "bf16"}, "int4": {}, "raw": {}, "fp8": {}},
}


def test_collapse_and_template_less_run_are_flagged(tmp_path, tok):
    rng = np.random.default_rng(0)
    right = list(rng.random(N) < 0.8)
    good = ["6"] * N
    cells = [
        _write_cell(tmp_path, "m", "bf16", "vllm", _mc(right) + _gen(good), tok=tok),
        _write_cell(tmp_path, "m", "fp8", "vllm", _mc(right) + _gen(good), tok=tok),
        # Injected collapse: every answer wrong, yet every generation parses (no flag).
        _write_cell(tmp_path, "m", "int4", "vllm", _mc([False] * N) + _gen(["7"] * N), tok=tok),
        # Template-less: the chat model gets raw text and rambles past the answer.
        _write_cell(
            tmp_path,
            "m",
            "raw",
            "vllm",
            _mc(right) + _gen(["Question: what is the next question"] * N),
            apply_chat_template=False,
            tok=tok,
        ),
    ]
    speed = _speed({"bf16": (100, 1000), "fp8": (150, 600), "int4": (200, 400), "raw": (100, 1000)})
    engine = pd.DataFrame(
        {"model": "m", "engine": "vllm", "quantization": ["bf16", "fp8"], "status": "ok"}
    ).assign(kv_cache_tokens=[1000, 2000])
    out = tmp_path / "report"
    summary = build_quality_report(
        [q for q, _ in cells], [s for _, s in cells], speed, engine, CFG, out
    )

    gate = pd.read_csv(out / "gate.csv").set_index(["quantization", "task"])
    assert gate.loc[("int4", "qb_mc"), "verdict"] == "collapse"
    assert gate.loc[("int4", "all"), "verdict"] == "collapse"
    assert gate.loc[("raw", "qb_gen"), "verdict"] == "collapse"
    assert gate.loc[("fp8", "qb_mc"), "verdict"] == "pass"
    assert "chat model evaluated without chat template" in gate.loc[("raw", "qb_gen"), "flags"]
    assert summary["collapsed"] == 5  # int4: both tasks and pooled; raw: qb_gen and pooled

    quality = pd.read_csv(out / "quality.csv").fillna("")
    flags = quality.groupby("quantization")["flags"].first()
    assert "preflight: chat model evaluated without chat template" in flags["raw"]
    assert "qb_gen/first-integer: 100% of answers unparsed" in flags["raw"]
    assert flags["bf16"] == "" and flags["int4"] == ""
    assert summary["flagged_cells"] == ["m/raw/vllm"]
    assert "without chat template" in (out / "quality.md").read_text()

    frontier = pd.read_csv(out / "frontier.csv").set_index("quantization")
    assert set(frontier["task"]) == {"all"} and set(frontier["input_len"]) == {1}
    assert frontier.loc["fp8", "speed_ratio"] == pytest.approx(1.5)
    assert frontier.loc["int4", "memory_ratio"] == pytest.approx(0.4)
    assert frontier.loc["fp8", "kv_ratio"] == pytest.approx(2.0)
    assert frontier.loc["int4", "verdict"] == "collapse"
    assert "int4 (collapse)" in (out / "frontier.svg").read_text()
    assert (out / "frontier.png").stat().st_size > 10_000
    for stem in ("gate", "frontier", "quality"):
        assert all((out / f"{stem}.{ext}").exists() for ext in ("md", "csv", "html"))


def test_published_bf16_miss_makes_rows_suspect(tmp_path, tok):
    right = [i < 45 for i in range(N)]  # 0.75
    cells = [_write_cell(tmp_path, "m", q, "vllm", _mc(right), tok=tok) for q in ("bf16", "fp8")]
    cfg = {**CFG, "evaluation": {**CFG["evaluation"], "published": {"m": {"qb_mc": 0.30}}}}
    build_quality_report(
        [q for q, _ in cells], [s for _, s in cells], pd.DataFrame(), None, cfg, tmp_path / "r"
    )
    gate = pd.read_csv(tmp_path / "r" / "gate.csv")
    assert set(gate["verdict"]) == {"evaluation suspect"}
    assert (pd.read_csv(tmp_path / "r" / "frontier.csv")["baseline_suspect"]).all()


@pytest.mark.skipif(not default_reference_dir().is_dir(), reason="no published tables")
def test_published_score_found_by_reference_name(tmp_path, tok):
    """A model whose reference_name is Qwen3-8B is held to reference/hellaswag_l40.csv."""
    right = [i < 255 for i in range(400)]  # 0.6375, as published
    samples = _mc(right, task="hellaswag")
    cells = [_write_cell(tmp_path, "q8", q, "vllm", samples, tok=tok) for q in ("bf16", "fp8")]
    cfg = {**CFG, "models": {"q8": {"source": "hf", "id": "/x", "reference_name": "Qwen3-8B"}}}
    build_quality_report(
        [q for q, _ in cells], [s for _, s in cells], pd.DataFrame(), None, cfg, tmp_path / "r"
    )
    gate = pd.read_csv(tmp_path / "r" / "gate.csv").set_index("quantization")
    assert gate.loc["bf16", "baseline_check"] == "reproduced"
    assert "published 0.6375" in gate.loc["bf16", "reason"]
    assert gate.loc["fp8", "verdict"] == "pass"
