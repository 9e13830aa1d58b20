"""The `sweep` scenario (issue 20): the engine's /metrics parsed under each engine's names, the
reference server's capacity model, the prompts-file workload, and the sweep run for real
through the workflow against the reference server standing in for `vllm serve` (its capacity
model given by --slots / --step-ms / --step-ms-per-running), its saturation throughput and
highest rate under the SLO asserted against the model's analytic values."""

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_e2e import copy_workflow, snakemake

from quantbench.client.prompts import PromptSource, longest_shared_prefix
from quantbench.client.scrape import engine_sample, parse_prometheus, summarize_samples
from quantbench.engines import get_engine
from quantbench.models import build_tokenizer
from quantbench.refserver import capacity_model, read_truth
from quantbench.scenarios import get_scenario
from quantbench.status import Status
from quantbench.sweep import read_prompts_file, search_bounds, slo_text

ROOT = Path(__file__).resolve().parent.parent
VLLM_TEXT = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
vllm:num_requests_waiting{engine="0",model_name="m"} 7.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{engine="0",model_name="m"} 4.0
vllm:prompt_tokens_total{model_name="m"} 1.2e+06
"""
SGLANG_TEXT = """sglang:num_running_reqs{model_name="m"} 12.0
sglang:num_queue_reqs{model_name="m"} 0.0
sglang:token_usage{model_name="m"} 0.28
sglang:cache_hit_rate{model_name="m"} 0.0
"""


def test_metrics_under_each_engines_names():
    assert parse_prometheus(VLLM_TEXT)["vllm:num_requests_running"] == [3.0, 2.0]
    # counts summed over data-parallel engines, KV usage the fullest one's
    assert engine_sample(VLLM_TEXT) == {
        "running": 5.0,
        "waiting": 7.0,
        "kv_usage": 0.5,
        "preemptions": 4.0,
    }
    old = VLLM_TEXT.replace("kv_cache_usage_perc", "gpu_cache_usage_perc")
    assert engine_sample(old)["kv_usage"] == 0.5  # vLLM's earlier name
    assert engine_sample(SGLANG_TEXT) == {
        "running": 12.0,
        "waiting": 0.0,
        "kv_usage": 0.28,
        "preemptions": None,
    }
    samples = [
        {"t": t, "running": r, "waiting": 0, "kv_usage": r / 8, "preemptions": p}
        for t, r, p in [(0.0, 0, 1), (1.0, 4, 1), (2.0, 6, 3), (3.0, 1, 5), (4.0, 0, 5)]
    ]
    got = summarize_samples(samples, 0.5, 3.5)
    assert (got["max_running"], got["max_kv_usage"], got["preemptions"]) == (6, 0.75, 4)
    # SGLang exposes /metrics only when asked
    cmd = get_engine("sglang")({"device": "cuda"}).launch_spec("/m", True, "none", "m")["cmd"]
    assert "--enable-metrics" in cmd


def test_capacity_model_and_search_bounds():
    m = capacity_model(8, 0.02, 0.008, 0.002, 21, slo_tpot_s=0.015)
    # a slot holds a request 20 ms + 20 steps of 8 + 2 x 8 ms: 500 ms; 8 slots: 16 req/s
    assert math.isclose(m["saturation_request_throughput"], 16.0)
    assert math.isclose(m["saturation_output_throughput"], 336.0)
    # TPOT 15 ms = 8 + 2 x 3.5 running; 3.5 / (20 + 20 x 15 ms) = 10.9375 req/s
    assert math.isclose(m["max_rate_under_slo"], 10.9375)
    rows = [
        {"phase": "saturation", "request_rate": math.inf, "request_throughput": 16, "meets_slo": 0},
        {"phase": "auto", "request_rate": 4, "meets_slo": True},
        {"phase": "auto", "request_rate": 8, "meets_slo": True},
        {"phase": "auto", "request_rate": 12, "meets_slo": False},
        {"phase": "auto", "request_rate": 14, "meets_slo": True},  # noise above a failure
    ]
    assert search_bounds(rows) == (8, 12)
    assert search_bounds(rows[:3]) == (8, 16)  # the saturation run bounds the search
    assert slo_text({"slo_ms": {"ttft": 500, "tpot": 50, "e2el": None}}) == (
        "p99 TTFT <= 500 ms, p99 TPOT <= 50 ms"
    )


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(1024)


def test_prompts_file_and_shared_prefix_workloads(tmp_path, tokenizer):
    texts = read_prompts_file(str(ROOT / "data/prompts/sample.jsonl"))
    assert len(texts) == 8 and texts[3].startswith("What is the difference")  # a ShareGPT turn
    engine = get_engine("vllm")({"device": "cpu", "request_timeout_s": 60})
    launch = {
        "served_model_name": "ref",
        "env": {"PYTHONPATH": str(ROOT)},
        "ready_timeout_s": 60,
        "cmd": [
            sys.executable,
            "-m",
            "quantbench.refserver",
            "--port",
            "{port}",
            "--model",
            "ref",
            "--ttft-ms",
            "2",
            "--itl-ms",
            "1",
            "--prefix-cache",
            "--cache-report",
            "--log-prompts",
            "--truth-log",
            str(tmp_path / "truth.jsonl"),
        ],
    }
    base = {
        "request_rates": [40],
        "concurrencies": [2],
        "search_iterations": 2,
        "tolerance": 0.05,
        "num_prompts": 6,
        "duration_s": None,
        "input_len": 12,
        "output_len": 4,
        "burstiness": 1.0,
        "warmup": 1,
        "seed": 0,
        "slo_ms": {"ttft": 1000, "tpot": 1000},
        "metrics_interval_s": 0.1,
    }
    prompts = PromptSource(tokenizer)
    with engine.serve(launch, str(tmp_path / "server.log")):
        cfg = {**base, "prompts_file": "data/prompts/sample.jsonl", "shared_prefix_tokens": 0}
        rows, raw, extra = get_scenario("sweep").run(engine, prompts, cfg, progress=False)
        shared = {**base, "prompts_file": None, "shared_prefix_tokens": 8}
        shared_rows, _, _ = get_scenario("sweep").run(engine, prompts, shared, progress=False)
    points, summary = rows[:-1], rows[-1]
    assert [r["phase"] for r in points] == ["saturation", "listed", "concurrency"]
    assert all(r["status"] == Status.OK and r["completed"] == 6 for r in points)
    assert points[0]["workload"] == "file data/prompts/sample.jsonl"
    # every SLO met, even unbounded: capacity is the saturation throughput, no search
    assert summary["slo_met_at_saturation"] and extra["search"] == []
    assert summary["max_rate_under_slo"] == points[0]["request_throughput"]
    assert summary["max_concurrency_under_slo"] == 2
    assert extra["warmup_requests"] == 3 and len(raw) == 18
    assert [s["point"] for s in extra["metrics_series"]] == [r["point"] for r in points]
    assert all(s["samples"] and s["error"] is None for s in extra["metrics_series"])
    truth = read_truth(str(tmp_path / "truth.jsonl"))
    file_prompts = [t["prompt_ids"] for t in truth[:21]]
    assert longest_shared_prefix(file_prompts) == 0  # each led by its own tokens
    assert summary["cached_tokens"] == 0 and summary["cache_hits"] == 0
    # the opt-in shared prefix: the server serves it from its cache, and that is expected
    assert all(r["cached_tokens"] > 0 and r["cache_hits"] == 0 for r in shared_rows[1:-1])


# The capacity model the workflow's server runs with, and what it gives analytically.
SLOTS, TTFT_MS, STEP_MS, PER_RUNNING_MS, OUTPUT_LEN = 8, 20, 8, 2, 21
SLO = {"ttft": 100, "tpot": 15}


def test_sweep_through_the_workflow_finds_the_capacity_model(tmp_path, monkeypatch):
    # its own device lock: a measurement elsewhere on this machine neither blocks nor disturbs it
    monkeypatch.setenv("QUANTBENCH_LOCK_DIR", str(tmp_path / ".locks"))
    work = copy_workflow(tmp_path)
    shim = work / "fake-vllm"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m quantbench.refserver "$@"\n')
    shim.chmod(0o755)
    capacity = ["--ttft-ms", str(TTFT_MS), "--slots", str(SLOTS), "--step-ms", str(STEP_MS)]
    capacity += ["--step-ms-per-running", str(PER_RUNNING_MS), "--truth-log", "truth.jsonl"]
    (work / "server-args.json").write_text(json.dumps({"*": capacity}))
    cfg = {
        "models": {"tiny": {"source": "tiny", "seed": 0}},
        "quantizations": {"bf16": {"method": "bf16"}},
        "engines": {
            "vllm": {
                "executable": "./fake-vllm",
                "device": "cpu",
                "ready_timeout_s": 60,
                "request_timeout_s": 60,
                "extra_args": ["--faults-from", "server-args.json"],
            }
        },
        "cells": [{"model": "tiny", "quantization": "bf16", "engine": "vllm"}],
        "benchmark": {
            "scenarios": ["sweep"],
            "sweep": {
                "request_rates": "auto",
                "points": 3,
                "low_fraction": 0.25,
                "high_fraction": 0.75,
                "search_iterations": 4,
                "tolerance": 0.05,
                "num_prompts": 4 * SLOTS,  # four full waves of the slots at saturation
                "duration_s": 2.0,
                "input_len": 16,
                "output_len": OUTPUT_LEN,
                "burstiness": 1000,  # evenly spaced arrivals: the steady state of the model
                "warmup": 2,
                "slo_ms": SLO,
                "metrics_interval_s": 0.25,
            },
        },
        "evaluation": {"enabled": False},
    }
    (work / "sweep.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--configfile", "sweep.yaml")

    model = capacity_model(
        SLOTS, TTFT_MS / 1e3, STEP_MS / 1e3, PER_RUNNING_MS / 1e3, OUTPUT_LEN, SLO["tpot"] / 1e3
    )
    doc = json.loads((work / "results/bench/tiny/bf16/vllm/sweep.json").read_text())
    assert doc["status"] == Status.OK, doc.get("reason")
    points, summary = doc["rows"][:-1], doc["rows"][-1]
    sat = points[0]
    shown = {k: v for k, v in summary.items() if "rate" in k or "saturation" in k}
    print("analytic", model, "measured", shown)
    # saturation: 16 req/s, 336 output tok/s analytically
    assert summary["saturation_request_throughput"] == pytest.approx(
        model["saturation_request_throughput"], rel=0.1
    )
    assert summary["saturation_output_throughput"] == pytest.approx(
        model["saturation_output_throughput"], rel=0.1
    )
    # the highest rate under p99 TPOT 15 ms: 10.94 req/s analytically; the p99 of a measured
    # point carries the machine's scheduling noise, so the search may stop a little below
    found, analytic = summary["max_rate_under_slo"], model["max_rate_under_slo"]
    assert 0.75 * analytic <= found <= 1.05 * analytic, (found, analytic)
    assert summary["slo"] == "p99 TTFT <= 100 ms, p99 TPOT <= 15 ms"
    assert [p["phase"] for p in points[:4]] == ["saturation", "auto", "auto", "auto"]
    assert any(p["phase"] == "search" for p in points)
    # the engine's own view, scraped from /metrics: every slot busy and a queue at
    # saturation; below it, no queue and about as many running as the model says
    assert sat["max_running"] == SLOTS and sat["max_waiting"] > 0
    assert all(p["max_waiting"] == 0 for p in points[1:] if p["meets_slo"])
    assert len(doc["metrics_series"]) == len(points)
    # cache-controlled: no prompt of the run shares a prefix, every record says 0 cached
    truth = read_truth(str(work / "truth.jsonl"))
    assert len(truth) == len(doc["records"]) + doc["warmup_requests"]
    assert all(r["cached_tokens"] == 0 for r in doc["records"])
    assert summary["cache_hits"] == 0

    capacity = pd.read_csv(work / "results/report/capacity.csv")
    row = capacity.iloc[0]
    assert (row["engine"], row["model"], row["quantization"]) == ("vllm", "tiny", "bf16")
    assert row["max_rate_under_slo"] == pytest.approx(found, abs=0.01)
    assert row["slo"] == summary["slo"]
    assert (work / "results/report/capacity_curves.png").stat().st_size > 10_000
    frontier = pd.read_csv(work / "results/report/frontier.csv")
    assert frontier["capacity_under_slo"].iloc[0] == pytest.approx(found, rel=1e-3)
