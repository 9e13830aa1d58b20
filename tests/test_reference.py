"""Loaders read the published CSVs as published; comparisons checked on hand-computed ratios."""

import math

import pandas as pd
import pytest

from quantbench.reference import (
    QUANTS,
    compare_with_published,
    default_reference_dir,
    load_hellaswag_l40,
    load_qwen3_speed,
    load_sglang_batch,
    load_vllm_kvcache_lmeval,
    load_vllm_serving_l40,
)

pytestmark = pytest.mark.skipif(
    not default_reference_dir().is_dir(), reason="published reference tables not available"
)


@pytest.fixture(scope="module")
def speed():
    return load_qwen3_speed()


def _cell(df, engine, model, input_len, quant):
    row = df[
        (df.engine == engine)
        & (df.model == model)
        & (df.input_len == input_len)
        & (df.quant == quant)
    ]
    assert len(row) == 1
    return row.iloc[0]


def test_speed_table_shape(speed):
    assert len(speed) == 216
    # SGLang: 0.6B/1.7B at 4 lengths, six larger models at 6, three quants each: 24 + 108.
    # Transformers: seven models (no 235B) at 4 lengths, three quants: 84.
    assert (speed.engine == "sglang").sum() == 132
    assert (speed.engine == "transformers").sum() == 84
    assert set(speed.quant) == set(QUANTS)
    assert not speed.duplicated(["engine", "model", "input_len", "quant"]).any()


def test_129042_is_normalised(speed):
    assert sorted(speed.input_len.unique()) == [1, 6144, 14336, 30720, 63488, 129024]
    # Six SGLang models x three quants were published at the longest length.
    assert (speed.input_len == 129024).sum() == 18
    assert _cell(speed, "sglang", "Qwen3-8B", 129024, "bf16").speed_tok_s == 1173.32


def test_known_cells(speed):
    assert _cell(speed, "sglang", "Qwen3-8B", 1, "bf16").speed_tok_s == 81.73
    mem = _cell(speed, "transformers", "Qwen3-32B", 1, "bf16")
    assert (mem.speed_tok_s, mem.gpu_mem_mb) == (26.24, 62751)
    assert math.isnan(_cell(speed, "sglang", "Qwen3-8B", 1, "bf16").gpu_mem_mb)
    assert _cell(speed, "transformers", "Qwen3-0.6B", 1, "gptq-int8").speed_tok_s == 26.56


def test_tp_and_kernel_from_note(speed):
    c = _cell(speed, "sglang", "Qwen3-32B", 129024, "bf16")
    assert (c.gpus, c.tp, c.note) == (2, 2, "TP=2")
    c = _cell(speed, "sglang", "Qwen3-235B-A22B", 1, "gptq-int4")
    assert (c.gpus, c.tp, c.kernel) == (4, 4, "GPTQ-Marlin")
    c = _cell(speed, "sglang", "Qwen3-30B-A3B", 1, "gptq-int4")
    assert (c.tp, c.kernel) == (1, "GPTQ-Marlin")
    assert pd.isna(_cell(speed, "sglang", "Qwen3-8B", 1, "fp8").kernel)
    assert (speed.loc[speed.supported, "tp"] == speed.loc[speed.supported, "gpus"]).all()


def test_unsupported_cells(speed):
    bad = speed[~speed.supported]
    assert len(bad) == 4
    assert set(bad.model) == {"Qwen3-30B-A3B"} and set(bad.quant) == {"gptq-int4"}
    assert set(bad.engine) == {"transformers"}
    assert bad.speed_tok_s.isna().all() and bad.gpu_mem_mb.isna().all() and bad.gpus.isna().all()
    assert set(bad.note) == {"MoE Kernel Unsupported"}
    assert speed.loc[speed.supported, "speed_tok_s"].notna().all()


def test_other_tables():
    serving = load_vllm_serving_l40()
    assert list(serving.quant) == ["bf16", "fp8", "awq-int4", "awq-int4"]
    marlin = serving[serving.kernel == "awq_marlin"].iloc[0]
    assert marlin.tpot_mean_ms == 24.91
    hs = load_hellaswag_l40()
    assert len(hs) == 6
    assert hs.set_index("quant").loc["gguf-iq2_s", "acc"] == 0.2675
    batch = load_sglang_batch()
    assert len(batch) == 12
    b200 = batch[(batch.gpu == "B200") & (batch.batch_size == 2)].iloc[0]
    assert b200.input_throughput_tok_s == 15315.43  # kept as published
    kv = load_vllm_kvcache_lmeval().set_index("quant")
    assert kv.loc["awq-int4", "kv_cache_tokens_max"] == 549232


def test_compare_hand_built():
    keys = ["engine", "model", "input_len", "quant"]
    rows = [
        ("e", "m", 1, "bf16"),
        ("e", "m", 1, "fp8"),
        ("e", "m", 100, "bf16"),
        ("e", "m", 100, "fp8"),
    ]
    published = pd.DataFrame(rows, columns=keys).assign(
        speed_tok_s=[10.0, 20.0, 40.0, 60.0], gpu_mem_mb=[1000.0, 600.0, 2000.0, 1500.0]
    )
    measured = pd.DataFrame(rows[:3], columns=keys).assign(
        speed_tok_s=[5.0, 15.0, 30.0], gpu_mem_mb=[1100.0, 600.0, 1900.0]
    )
    out = compare_with_published(measured, published).set_index(["input_len", "quant"])
    assert len(out) == 3  # measured rows only
    fp8 = out.loc[(1, "fp8")]
    assert fp8.speed_tok_s_published == 20.0
    assert fp8.speed_tok_s_ratio == pytest.approx(0.75)  # 15 / 20
    assert fp8.speed_tok_s_delta_pct == pytest.approx(-25.0)
    # measured fp8/bf16 = 15/5 = 3; published 20/10 = 2 -> 1.5
    assert (fp8.speed_vs_bf16, fp8.speed_vs_bf16_published) == (3.0, 2.0)
    assert fp8.speed_vs_bf16_ratio == pytest.approx(1.5)
    long_bf16 = out.loc[(100, "bf16")]
    # measured 30/5 = 6; published 40/10 = 4 -> 1.5
    assert long_bf16.speed_vs_len1 == 6.0 and long_bf16.speed_vs_len1_published == 4.0
    assert long_bf16.speed_vs_len1_ratio == pytest.approx(1.5)
    assert long_bf16.speed_vs_bf16 == 1.0
    # memory compared directly: 1100 / 1000
    assert out.loc[(1, "bf16"), "gpu_mem_mb_delta_pct"] == pytest.approx(10.0)
    assert long_bf16.gpu_mem_mb_ratio == pytest.approx(0.95)


def test_compare_against_real_table(speed):
    keys = ["engine", "model", "input_len", "quant"]
    measured = pd.DataFrame(
        [
            ("sglang", "Qwen3-8B", 1, "bf16", 163.46),  # 2x published 81.73
            ("sglang", "Qwen3-8B", 1, "fp8", 150.25),  # = published
            ("sglang", "Qwen3-8B", 6144, "bf16", 300.0),
            ("transformers", "Qwen3-30B-A3B", 1, "gptq-int4", 5.0),  # published "-"
        ],
        columns=[*keys, "speed_tok_s"],
    )
    out = compare_with_published(measured, speed).set_index(["input_len", "quant", "engine"])
    assert out.loc[(1, "bf16", "sglang"), "speed_tok_s_ratio"] == pytest.approx(2.0)
    # fp8/bf16: measured 150.25/163.46, published 150.25/81.73 -> 81.73/163.46 = 0.5
    assert out.loc[(1, "fp8", "sglang"), "speed_vs_bf16_ratio"] == pytest.approx(0.5)
    # len 6144/len 1: measured 300/163.46, published 296.25/81.73 -> 300*81.73/(163.46*296.25)
    assert out.loc[(6144, "bf16", "sglang"), "speed_vs_len1_ratio"] == pytest.approx(
        0.5063291, rel=1e-6
    )
    assert math.isnan(out.loc[(1, "gptq-int4", "transformers"), "speed_tok_s_ratio"])


def test_two_quantizations_of_one_published_kind_stay_two_rows():
    # On-the-fly FP8 and block FP8 both answer the published FP8 cell: neither is averaged in.
    def frame(rows):
        return pd.DataFrame(rows, columns=["engine", "model", "input_len", "quant", "speed_tok_s"])

    published = frame(
        [("sglang", "Qwen3-8B", 1, "bf16", 80.0), ("sglang", "Qwen3-8B", 1, "fp8", 150.0)]
    )
    measured = frame(
        [
            ("sglang", "Qwen3-8B", 1, "bf16", 100.0),
            ("sglang", "Qwen3-8B", 1, "fp8", 150.0),
            ("sglang", "Qwen3-8B", 1, "fp8", 110.0),
        ]
    )
    measured["quantization"] = ["bf16", "fp8-online", "fp8-block"]
    out = compare_with_published(measured, published).set_index("quantization")
    assert len(out) == 3
    assert out.loc[["fp8-online", "fp8-block"], "speed_tok_s_published"].tolist() == [150.0] * 2
    assert out.loc["fp8-online", "speed_vs_bf16"] == pytest.approx(1.5)
    assert out.loc["fp8-block", "speed_vs_bf16"] == pytest.approx(1.1)
    assert out.loc["fp8-block", "speed_vs_len1"] == pytest.approx(1.0)


def test_published_transformers_memory_is_weights_plus_kv_plus_a_constant(speed):
    # The published Transformers memory (Flash Attention 2) is the end-of-generation footprint:
    # weights + KV of prompt + 2048 tokens, plus 33-48 MB, for every BF16 cell from 6144 tokens
    # on. This checks the floor (parameter counts, KV bytes per token) against real figures.
    from quantbench import archs
    from quantbench.roofline import resident_bytes

    bf16 = speed[
        (speed.engine == "transformers")
        & (speed.quant == "bf16")
        & (speed.input_len >= 6144)
        & speed.gpu_mem_mb.notna()
    ]
    assert len(bf16) >= 20
    for _, r in bf16.iterrows():
        floor = resident_bytes(archs.load_arch(r.model), 16, r.input_len + 2048) / 2**20
        assert 30 < r.gpu_mem_mb - floor < 50, (r.model, r.input_len, r.gpu_mem_mb - floor)


def test_memory_is_put_against_its_floor(speed):
    from quantbench.published import comparison_table, published_comparison

    cells = pd.DataFrame(
        {
            "scenario": "single",
            "status": "ok",
            "engine": "transformers",
            "model": "Qwen3-8B",
            "quantization": "bf16",
            "input_len": [1, 6144],
            "output_len": 2048,
            "speed_tok_s": [40.0, 150.0],
            "decode_speed_tok_s": [40.0, 37.0],
            "peak_mem_mb": [15950.5, 17148.8],
            "decode_peak_mem_mb": [15950.5, 16850.0],
            "end_mem_mb": [15946.0, 16808.0],
            "mem_method": "torch.cuda.max_memory_allocated",
            "device_name": "NVIDIA H100 80GB HBM3",
        }
    )
    config = {"models": {"Qwen3-8B": {}}, "quantizations": {"bf16": {}}}
    out = published_comparison(cells, config).set_index("input_len")
    # The decode-only peak and the memory held at the end beside the whole request's peak, each
    # against the published 16811 MB.
    assert out.loc[6144, "gpu_mem_end_mb_delta_pct"] == pytest.approx((16808 / 16811 - 1) * 100)
    assert out.loc[6144, "gpu_mem_decode_mb_delta_pct"] == pytest.approx((16850 / 16811 - 1) * 100)
    assert out.loc[6144, "gpu_mem_mb_delta_pct"] == pytest.approx((17148.8 / 16811 - 1) * 100)
    # Qwen3-8B: 8,190,735,360 BF16 parameters, 147,456 KV bytes per token.
    floor_6144 = (8_190_735_360 * 2 + 147_456 * (6144 + 2048)) / 2**20
    assert out.loc[6144, "memory_floor_mb"] == pytest.approx(floor_6144)
    assert out.loc[6144, "over_floor_mb"] == pytest.approx(17148.8 - floor_6144)
    assert out.loc[6144, "over_floor_published_mb"] == pytest.approx(16811 - floor_6144)
    table = comparison_table(out.reset_index()).set_index("input_len")
    assert table.loc[6144, "speed"] == "150.00"  # one repeat: no spread claimed
    assert table.loc[1, "over_floor"] == f"{15950.5 - out.loc[1, 'memory_floor_mb']:+.0f}"
    assert table.loc[6144, "memory_decode_delta"] == "+0.2%"
    assert table.loc[6144, "memory_end"] == "16808.0"
    assert table.loc[6144, "memory_end_delta"] == "-0.0%"
    assert table.loc[6144, "memory_delta"] == "**+2.0%**"


def test_speed_table_shows_a_spread_only_over_repeats():
    from quantbench.scenarios.single import speed_table

    row = {"scenario": "single", "status": "ok", "engine": "sglang", "quantization": "bf16"}
    row |= {"decode_speed_tok_s": 1.0, "peak_mem_mb": 1.0, "mem_method": "nvml"}
    cells = pd.DataFrame(
        [
            row | {"model": "one", "input_len": 1, "speed_tok_s": 100.0},
            row | {"model": "two", "input_len": 1, "speed_tok_s": 100.0},
            row | {"model": "two", "input_len": 1, "speed_tok_s": 110.0},
        ]
    )
    table = speed_table(cells).set_index("model")
    assert table.loc["one", "speed_tok_s"] == "100.00"
    assert table.loc["two", "speed_tok_s"] == "105.00 ± 7.07"
