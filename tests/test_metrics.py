"""Metric definitions against hand-computed examples."""

import math

import pytest

from quantbench.metrics import RequestRecord, compute_metrics, qwen_speed


def rec(send, times, prompt=10, out=None, error=None):
    return RequestRecord(
        send_time=send,
        token_times=times,
        prompt_tokens=prompt,
        output_tokens=len(times) if out is None else out,
        error=error,
    )


def test_single_request_definitions():
    # Sent at 0; tokens at 0.100, 0.120, 0.150, 0.160 s.
    r = rec(0.0, [0.100, 0.120, 0.150, 0.160])
    assert r.ttft == pytest.approx(0.100)
    assert r.e2e == pytest.approx(0.160)
    # TPOT excludes the first token: (0.160 - 0.100) / 3
    assert r.tpot == pytest.approx(0.020)
    assert r.itls == pytest.approx([0.020, 0.030, 0.010])


def test_tpot_undefined_for_one_token():
    assert rec(0.0, [0.05]).tpot is None


def test_aggregate_over_requests():
    a = rec(0.0, [0.1, 0.2, 0.3], prompt=5)  # ttft 100 ms, tpot 100 ms
    b = rec(0.5, [0.8, 0.9], prompt=7)  # ttft 300 ms, tpot 100 ms
    m = compute_metrics([a, b])
    assert m.completed == 2 and m.failed == 0
    assert m.duration_s == pytest.approx(0.9)  # first send 0.0 -> last token 0.9
    assert m.total_input_tokens == 12 and m.total_output_tokens == 5
    assert m.output_throughput == pytest.approx(5 / 0.9)
    assert m.request_throughput == pytest.approx(2 / 0.9)
    assert m.latency["ttft_mean_ms"] == pytest.approx(200.0)
    assert m.latency["ttft_median_ms"] == pytest.approx(200.0)
    # numpy linear percentile between 100 and 300
    assert m.latency["ttft_p90_ms"] == pytest.approx(280.0)
    assert m.latency["tpot_mean_ms"] == pytest.approx(100.0)
    # ITLs: 100, 100 (a) and 100 (b)
    assert m.latency["itl_mean_ms"] == pytest.approx(100.0)
    assert m.latency["e2el_mean_ms"] == pytest.approx((300 + 400) / 2)


def test_failed_requests_are_counted_not_averaged():
    good = rec(0.0, [0.1, 0.2])
    bad = rec(0.0, [], error="timeout")
    m = compute_metrics([good, bad])
    assert (m.completed, m.failed) == (1, 1)
    assert m.latency["ttft_mean_ms"] == pytest.approx(100.0)


def test_goodput_counts_requests_meeting_every_slo():
    fast = rec(0.0, [0.05, 0.06, 0.07])  # ttft 50 ms, tpot 10 ms
    slow = rec(0.0, [0.50, 0.51, 0.52])  # ttft 500 ms
    m = compute_metrics([fast, slow], duration_s=1.0, slo_ms={"ttft": 100, "tpot": 20})
    assert m.goodput == pytest.approx(1.0)


def test_empty_metric_is_nan():
    m = compute_metrics([rec(0.0, [0.1], out=1)])
    assert math.isnan(m.latency["tpot_mean_ms"])


def test_qwen_speed_counts_prompt_and_generated_tokens():
    s = qwen_speed(prompt_tokens=6144, output_tokens=2048, seconds=4.0)
    assert s["speed_tok_s"] == pytest.approx((6144 + 2048) / 4.0)
    assert s["decode_speed_tok_s"] == pytest.approx(512.0)
