"""Served engines' memory and energy columns (issue 18): the memory a request holds tells
formats apart; energy is per scenario, per output token, with the idle part apart."""

import pandas as pd
import pytest

from quantbench import gpu
from quantbench.engines import get_engine
from quantbench.jobs import _energy_over, _energy_split
from quantbench.report import engine_table


def _fact(value):
    return {"value": value}


@pytest.mark.parametrize("engine", ["sglang", "vllm"])
def test_memory_column_is_weights_plus_the_requests_kv_and_tells_formats_apart(engine):
    # Qwen3-8B on the lent H100 (SGLang's start-up log, 2026-12-06): BF16 and on-the-fly FP8.
    formats = {
        "bf16": {"weights_gib": 15.28, "kv_cache_gib": 51.44, "kv_cache_tokens": 374561},
        "fp8": {"weights_gib": 9.09, "kv_cache_gib": 57.62, "kv_cache_tokens": 419646},
    }
    held = {}
    for name, facts in formats.items():
        e = get_engine(engine)({"device": "cuda"})
        e.facts = {k: _fact(v) for k, v in facts.items()}
        held[name] = e.measure_memory(4096 + 512)
        per_token_mb = facts["kv_cache_gib"] * 1024 / facts["kv_cache_tokens"]
        expected = facts["weights_gib"] * 1024 + 4608 * per_token_mb
        assert held[name]["peak_mem_mb"] == pytest.approx(expected)
        assert held[name]["mem_method"].startswith("engine log: weights + KV")
    assert held["bf16"]["peak_mem_mb"] == pytest.approx(16294.7, abs=0.5)  # the report's cell
    assert held["fp8"]["peak_mem_mb"] < held["bf16"]["peak_mem_mb"] - 6000


def test_energy_is_per_scenario_and_the_idle_part_is_apart(monkeypatch):
    counter = iter([1000.0, 1600.0, 1650.0])  # scenario start, scenario end, measuring end
    monkeypatch.setattr(gpu, "energy_j", lambda: next(counter))
    raw = [{"output_tokens": 100}, {"output_tokens": 100}]
    rows = [{"client": "quantbench"}, {"client": "vllm bench serve", "total_output_tokens": 100}]
    scenario = _energy_over(0.0, gpu.energy_j(), raw, rows)
    # the engine's own client's tokens count too: 600 J over 300 output tokens
    assert scenario["joules"] == 600.0 and scenario["output_tokens"] == 300
    assert scenario["j_per_output_token"] == pytest.approx(2.0)
    split = _energy_split(1000.0, scenario["seconds"] + 1.5, {"engine_client": scenario})
    assert split["total_j"] == 650.0 and split["scenarios_j"] == 600.0
    assert split["idle_j"] == 50.0 and split["idle_s"] == pytest.approx(1.5)
    monkeypatch.setattr(gpu, "energy_j", lambda: None)  # no NVML (a CPU run): no figure
    assert _energy_over(0.0, None, raw, rows) is None


def test_engine_table_shows_process_and_device_memory_apart_and_energy_per_scenario(tmp_path):
    import json

    cell = tmp_path / "bench" / "m" / "q" / "sglang"
    cell.mkdir(parents=True)
    prov = {"model": "m", "quantization": "q", "engine": "sglang"}
    facts = {
        "provenance": prov,
        "status": "ok",
        "startup": {
            "weights_gib": _fact(15.28),
            "kv_cache_gib": _fact(51.44),
            "kv_cache_tokens": _fact(374561),
            "process_gpu_memory_mb": _fact(71280.0),
            "device_gpu_memory_used_mb": _fact(71769.6),
        },
        "prefix_cache": {"how": "--disable-radix-cache"},
        "energy": {"total_j": 52119.5, "idle_j": 56.0, "idle_s": 0.26},
    }
    (cell / "engine.json").write_text(json.dumps(facts))
    serving = {"scenario": "serving", "status": "ok", "rows": [], "provenance": prov}
    serving |= {"energy": {"j_per_output_token": 0.47}, "warmup_requests": 8}
    (cell / "serving.json").write_text(json.dumps(serving))
    table = engine_table([str(cell / "engine.json")], None)
    row = table.iloc[0]
    assert row["process_gpu_memory_mb"] == 71280.0
    assert row["device_gpu_memory_used_mb"] == 71769.6
    assert row["j_per_token_serving"] == 0.47 and row["energy_idle_j"] == 56.0
    assert row["warmup_requests"] == "serving 8"
    assert row["prefix_caching"] == "--disable-radix-cache"


def test_engine_table_reports_the_share_of_engine_time_spent_measuring(tmp_path):
    """Each cell's measuring share of its engine session, and the sweep's over every cell that
    held an engine (a cell that never started one is left out of the sum)."""
    import json

    paths = []
    for quant, session, measure in (("a", 100.0, 80.0), ("b", 300.0, 60.0), ("c", None, None)):
        cell = tmp_path / "bench" / "m" / quant / "vllm"
        cell.mkdir(parents=True)
        prov = {"model": "m", "quantization": quant, "engine": "vllm"}
        facts = {"provenance": prov, "status": "ok" if session else "failed"}
        facts |= {"session_s": session, "measure_s": measure}
        (cell / "engine.json").write_text(json.dumps(facts))
        paths.append(str(cell / "engine.json"))
    table = engine_table(paths, None).set_index("quantization", drop=False)
    assert table.loc["a", "measuring_share"] == 0.8
    assert table.loc["b", "measuring_share"] == 0.2
    assert pd.isna(table.loc["c", "measuring_share"])
    sweep = table[table["model"] == "all 2 cells"].iloc[0]
    assert sweep["session_s"] == 400.0 and sweep["measuring_share"] == 140.0 / 400.0
