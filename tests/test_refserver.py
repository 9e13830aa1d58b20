"""The reference server keeps its timing promises and logs the truth (loopback only)."""

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantbench.refserver import read_truth, start_refserver


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    truth = tmp_path_factory.mktemp("ref") / "truth.jsonl"
    with start_refserver(
        "--ttft-ms",
        "50",
        "--itl-ms",
        "10",
        "--eos-after",
        "5",
        "--workers",
        "2",
        "--truth-log",
        str(truth),
    ) as url:
        yield url, truth


async def _stream(url, body, rid):
    """Plain aiohttp, independent of our client: (ttft seen here, data payloads)."""
    events = []
    async with aiohttp.ClientSession() as s:
        t0 = time.perf_counter()
        async with s.post(url + "/v1/completions", json=body, headers={"X-Request-Id": rid}) as r:
            assert r.status == 200
            t_first = None
            async for line in r.content:
                if line.startswith(b"data: "):
                    t_first = t_first or time.perf_counter()
                    events.append(line[6:].strip())
    return t_first - t0, events


def _body(**kw):
    return {
        "model": "refmodel",
        "prompt": [1] * 8,
        "stream": True,
        "stream_options": {"include_usage": True},
        **kw,
    }


def test_timing_chunks_and_usage(server):
    url, truth_path = server
    ttft, events = asyncio.run(_stream(url, _body(max_tokens=20, ignore_eos=True), "t-timing"))
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["text"]) == 20
    usage = chunks[-1]["usage"]
    assert usage == {"prompt_tokens": 8, "completion_tokens": 20, "total_tokens": 28}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert 0.045 < ttft < 0.25  # generous: shared CI cores
    time.sleep(0.1)
    t = next(t for t in read_truth(truth_path) if t["id"] == "t-timing")
    assert len(t["chunk_times"]) == 20 and t["state"] == "done"
    assert 0.0499 <= t["chunk_times"][0] - t["recv_time"] < 0.1
    gaps = np.diff(t["chunk_times"])
    assert 0.008 < gaps.mean() < 0.013  # absolute deadlines: no accumulated lag
    # The last chunk is due at recv + 50 + 19*10 ms; lag must not have piled up.
    assert t["chunk_times"][-1] - t["recv_time"] < 0.24 + 0.03


def test_eos_min_tokens_and_ignore_eos(server):
    url, _ = server

    def count(**kw):
        _, events = asyncio.run(_stream(url, _body(**kw), "t-eos"))
        return json.loads(events[-2])["usage"]["completion_tokens"]

    assert count(max_tokens=20) == 5  # stops at its natural length (--eos-after 5)
    assert count(max_tokens=20, ignore_eos=True) == 20
    assert count(max_tokens=20, min_tokens=12) == 12
    assert count(max_tokens=3) == 3


def test_no_usage_without_stream_options(server):
    url, _ = server
    body = _body(max_tokens=4, ignore_eos=True)
    del body["stream_options"]
    _, events = asyncio.run(_stream(url, body, "t-nousage"))
    assert not any(b'"usage"' in e for e in events)
    assert len(events) == 5


def test_other_endpoints(server):
    url, _ = server

    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/health") as r:
                assert r.status == 200
            async with s.get(url + "/v1/models") as r:
                assert (await r.json())["data"][0]["id"] == "refmodel"
            async with s.post(url + "/tokenize", json={"prompt": "héllo"}) as r:
                assert (await r.json())["count"] == len("héllo".encode())
            async with s.post(url + "/v1/nope", json={}) as r:
                assert r.status == 404
            body = _body(max_tokens=3, ignore_eos=True, stream=False)
            async with s.post(url + "/v1/completions", json=body) as r:
                d = await r.json()
                assert d["usage"]["completion_tokens"] == 3
                assert d["choices"][0]["text"] == " a" * 3

    asyncio.run(go())


def test_uvloop_server_logs_truth(tmp_path):
    pytest.importorskip("uvloop")
    truth = tmp_path / "truth.jsonl"
    with start_refserver(
        "--uvloop", "--ttft-ms", "50", "--itl-ms", "10", "--truth-log", str(truth)
    ) as url:
        ttft, events = asyncio.run(_stream(url, _body(max_tokens=10, ignore_eos=True), "t-uv"))
    assert events[-1] == b"[DONE]" and 0.045 < ttft < 0.25
    time.sleep(0.1)
    t = read_truth(truth)[0]
    # libuv timers have 1 ms resolution: up to 1 ms early is allowed, and the log says so.
    assert len(t["chunk_times"]) == 10 and 0.049 <= t["chunk_times"][0] - t["recv_time"] < 0.1
