"""The per-length summary (quantbench/summary.py): computed over the successful repeats only,
a length with none keeps its status, and the result file, the speed table and the published
comparison show the same figures."""

import pandas as pd
import pytest

from quantbench.published import measured_cells
from quantbench.scenarios.single import speed_table, summarize_rows
from quantbench.status import MemorySource, Status
from quantbench.summary import summarize_lengths

CELL = {"model": "m", "quantization": "bf16", "engine": "vllm", "scenario": "single"}


def _row(input_len, speed, status=Status.OK, **extra):
    figures = {"decode_speed_tok_s": speed / 2, "ttft_ms": 5.0, "tpot_ms": 2.0}
    figures |= {"peak_mem_mb": 1000.0 + speed, "mem_method": MemorySource.TORCH_ALLOCATED}
    return CELL | {"input_len": input_len, "speed_tok_s": speed, "status": status} | figures | extra


ROWS = [
    _row(1, 100.0),
    _row(1, 110.0, cached_tokens=3, cache_hit=True),
    _row(1, 0.0, Status.FAILED, reason="CUDA out of memory"),  # left out of the figures
    _row(4096, float("nan"), Status.FAILED, reason="CUDA out of memory"),
]


def test_summary_is_over_the_successful_repeats():
    short, long = summarize_lengths(ROWS)
    assert (short.n, short.n_ok, short.status) == (3, 2, Status.OK)
    assert short.spread("speed_tok_s").mean == pytest.approx(105.0)
    assert short.spread("speed_tok_s").std == pytest.approx(7.0711, abs=1e-4)
    assert short.peak_mem_mb_max == 1110.0 and short.cache_hits == 1
    assert (long.n_ok, long.status, long.reason) == (0, Status.FAILED, "CUDA out of memory")
    assert long.figures is None
    # the result file's flat form
    first = summarize_rows(ROWS)[0]
    assert first["speed_tok_s"] == pytest.approx(105.0) and first["n_ok"] == 2
    assert "speed_tok_s" not in summarize_rows(ROWS)[1]


def test_tables_show_the_summary():
    table = speed_table(pd.DataFrame(ROWS)).set_index("input_len")
    assert table.loc[1, "speed_tok_s"].startswith("105.00 ± 7.07")
    assert table.loc[1, "memory_mb"] == "1110.00" and table.loc[1, "repeats"] == 2
    assert table.loc[4096, "speed_tok_s"].startswith("failed: CUDA out of memory")
    config = {"models": {"m": {"reference_name": "Qwen3-8B"}}, "quantizations": {"bf16": {}}}
    published = measured_cells(pd.DataFrame(ROWS).assign(output_len=16, device_name="x"), config)
    assert published["speed_tok_s"].tolist() == [pytest.approx(105.0)]
    assert published["repeats"].tolist() == [2]
