"""The streaming client against the reference server (loopback), and exact-length prompts."""

import gc
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantbench.client import (
    arrival_offsets,
    load_records,
    loop_factory,
    make_prompt_ids,
    make_prompt_text,
    run_load_sync,
    tokenize_via_server,
)
from quantbench.client.prompts import count_prompt_tokens
from quantbench.client.stamps import (
    _KernelStampedSocket,
    kernel_stamps_available,
    realtime_offset_ns,
)
from quantbench.client.stream import _body
from quantbench.metrics import compute_metrics
from quantbench.refserver import max_overlap, read_truth, start_refserver

N_OUT = 16


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    truth = tmp_path_factory.mktemp("ref") / "truth.jsonl"
    with start_refserver(
        "--ttft-ms", "50", "--itl-ms", "5", "--workers", "2", "--truth-log", str(truth)
    ) as url:
        yield url, truth


def _truth(path, prefix):
    time.sleep(0.1)  # lines are written when each stream ends
    return {t["id"]: t for t in read_truth(path) if t["id"].startswith(prefix + "-")}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_records_complete_and_near_truth(server, tmp_path):
    url, truth_path = server
    raw = tmp_path / "raw.jsonl"
    recs = run_load_sync(
        url,
        "refmodel",
        [[7] * 32] * 6,
        N_OUT,
        concurrency=3,
        warmup=2,
        id_prefix="exact",
        raw_path=str(raw),
    )
    truth = _truth(truth_path, "exact")
    assert len(recs) == 6 and sum("warmup" in k for k in truth) == 2  # sent, not recorded
    assert not any("warmup" in r.request_id for r in recs)
    for r in recs:
        assert r.ok, r.error
        assert r.output_tokens == N_OUT and len(r.token_times) == N_OUT
        assert r.prompt_tokens == 32 and not r.prompt_mismatch and not r.output_mismatch
        assert r.usage_seen and r.finish_reason == "length"
        assert r.connect_time is not None and r.connect_time <= r.send_time
        assert r.send_time < r.token_times[0] and r.token_times == sorted(r.token_times)
        assert r.chunk_content.count(True) == N_OUT and not r.chunk_content[-1]  # usage chunk
        t = truth[r.request_id]
        true_ttft = t["chunk_times"][0] - t["recv_time"]
        assert abs(r.ttft - true_ttft) < 0.02
        true_tpot = (t["chunk_times"][-1] - t["chunk_times"][0]) / (N_OUT - 1)
        assert abs(r.tpot - true_tpot) < 0.002
        # Stamps can never precede the server's write: same clock, causality.
        assert all(c >= s for c, s in zip(r.token_times, t["chunk_times"]))
    # The raw dump recomputes the same metrics.
    again = load_records(str(raw))
    assert compute_metrics(again).as_dict() == compute_metrics(recs).as_dict()


def test_gc_paused_only_while_measuring_and_loops(server):
    """A full GC pass mid-run stalls every chunk stamp; the client pauses GC and restores it."""
    url, truth_path = server
    assert gc.isenabled()
    for loop in ("asyncio", "auto"):
        recs = run_load_sync(url, "refmodel", [[1] * 8] * 2, 4, loop=loop, id_prefix="gc" + loop)
        assert all(r.ok for r in recs) and gc.isenabled() and gc.get_freeze_count() == 0
        # Linux: asyncio's transports read through our recvmsg, so stamps are the kernel's.
        assert {r.stamp_source for r in recs} == {"kernel"}
    assert loop_factory("asyncio") is None
    assert loop_factory("auto") is None  # kernel receive stamps need asyncio's loop
    try:
        import uvloop
    except ImportError:
        return
    assert loop_factory("uvloop") is uvloop.new_event_loop
    recs = run_load_sync(url, "refmodel", [[1] * 8], 4, loop="uvloop", id_prefix="uv")
    assert recs[0].ok and recs[0].stamp_source == "read"  # C transports: read-time stamps


def test_kernel_stamp_is_arrival_time_not_read_time():
    """Bytes that wait in the socket keep the time they arrived, on perf_counter's clock."""
    # What the client checks first: it also turns the kernel's (lazily enabled) stamping on, so
    # the first read below is stamped even in a fresh process on a fresh machine.
    assert kernel_stamps_available()
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    stamped = _KernelStampedSocket(client, realtime_offset_ns())
    with server, client, peer:
        sent = time.perf_counter()
        peer.sendall(b"data: x\n\n")
        time.sleep(0.05)  # a busy event loop: the read comes 50 ms after the bytes
        read_at = time.perf_counter()
        assert stamped.recv(4096) == b"data: x\n\n"
        assert sent <= stamped.qb_stamp < sent + 0.005 < read_at
        assert stamped.fileno() == client.fileno()  # everything else goes to the real socket


def test_concurrency_limit_respected(server):
    url, truth_path = server
    recs = run_load_sync(url, "refmodel", [[1] * 8] * 12, N_OUT, concurrency=3, id_prefix="conc")
    assert all(r.ok for r in recs)
    overlap = max_overlap(list(_truth(truth_path, "conc").values()))
    assert 2 <= overlap <= 3


def test_poisson_arrivals_seeded_and_followed(server):
    a, b = arrival_offsets(200, 50.0, 1.0, seed=3), arrival_offsets(200, 50.0, 1.0, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, arrival_offsets(200, 50.0, seed=4))
    gaps = np.diff(a)
    assert a[0] == 0 and 0.014 < gaps.mean() < 0.026  # mean 1/rate
    bursty = np.diff(arrival_offsets(2000, 50.0, 0.25, seed=3))
    assert bursty.std() / bursty.mean() > 1.5 > gaps.std() / gaps.mean()  # CV = 1/sqrt(shape)
    assert np.all(arrival_offsets(5) == 0)

    url, _ = server
    recs = run_load_sync(
        url, "refmodel", [[1] * 8] * 8, 4, request_rate=20.0, seed=5, id_prefix="poisson"
    )
    sched = np.array([r.scheduled_time for r in recs])
    assert np.allclose(sched - sched[0], arrival_offsets(8, 20.0, 1.0, seed=5))
    sent = np.array([r.send_time for r in recs])
    assert np.all(sent - sched < 0.05) and np.all(sent >= sched)


def test_errors_recorded_not_raised(server):
    url, _ = server
    bad = run_load_sync(url + "/nope", "refmodel", [[1] * 4], 4)
    assert bad[0].error.startswith("HTTP 404") and not bad[0].ok
    slow = run_load_sync(
        url, "refmodel", [[1] * 4], 4, timeout_s=0.3, extra_body={"ref_ttft_ms": 3000}
    )
    assert slow[0].error.startswith("timeout") and not slow[0].token_times
    dead = run_load_sync(f"http://127.0.0.1:{_free_port()}", "refmodel", [[1] * 4] * 2, 4)
    assert all(r.error and "Connect" in r.error for r in dead)
    m = compute_metrics(bad + slow + dead)
    assert m.failed == 4 and m.completed == 0


def test_chat_role_chunk_does_not_stop_ttft(server):
    url, truth_path = server
    recs = run_load_sync(
        url, "refmodel", ["hello there"] * 2, N_OUT, endpoint="chat", id_prefix="chat"
    )
    truth = _truth(truth_path, "chat")
    for r in recs:
        assert r.ok and r.output_tokens == N_OUT and r.prompt_tokens == len("hello there")
        assert r.chunk_content[0] is False  # role-only chunk, sent at once
        assert r.token_times[0] - r.chunk_times[0] > 0.03
        assert r.ttft > 0.045  # would be ~0 if the role chunk counted
        t = truth[r.request_id]
        assert abs(r.ttft - (t["chunk_times"][0] - t["recv_time"])) < 0.02
    with pytest.raises(ValueError):
        run_load_sync(url, "refmodel", [[1, 2]], 2, endpoint="chat")


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_a_token_with_empty_text_is_still_a_token(server, endpoint):
    # A dummy model's small tokenizer decodes most drawn ids to "": every chunk still marks one
    # generation step (SGLang on the lent H100 streamed 128 such chunks for 128 tokens).
    url, truth_path = server
    prompt = "hello there" if endpoint == "chat" else [1] * 8
    prefix = "empty-" + endpoint
    recs = run_load_sync(
        url,
        "refmodel",
        [prompt] * 2,
        N_OUT,
        endpoint=endpoint,
        id_prefix=prefix,
        extra_body={"ref_empty_text": True},
    )
    truth = _truth(truth_path, prefix)
    for r in recs:
        assert r.ok and len(r.token_times) == N_OUT == r.output_tokens
        t = truth[r.request_id]
        assert abs(r.ttft - (t["chunk_times"][0] - t["recv_time"])) < 0.02
        assert r.token_times[0] - r.send_time > 0.045  # the chat role chunk is still no token


def test_prompt_mismatch_flagged(server):
    url, _ = server
    recs = run_load_sync(url, "refmodel", ["abcd"], 2, expected_prompt_tokens=5)
    assert recs[0].ok and recs[0].prompt_tokens == 4 and recs[0].prompt_mismatch


# -- exact-length prompts ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers import decoders as dec
    from transformers import PreTrainedTokenizerFast

    text = (
        "Quantised models trade accuracy for speed; the benchmark measures both. "
        "Streaming servers send tokens one chunk at a time, über-fast, naïvely 123 456. "
    )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = dec.ByteLevel()
    tok.train_from_iterator(
        [text * 20],
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


@pytest.mark.parametrize("n", [1, 7, 128, 500])
def test_make_prompt_ids_exact(tokenizer, n):
    ids = make_prompt_ids(tokenizer, n, seed=n)
    assert len(ids) == n
    assert not set(ids) & set(tokenizer.all_special_ids)
    text = tokenizer.decode(ids)
    assert len(tokenizer.encode(text, add_special_tokens=False)) == n
    assert make_prompt_ids(tokenizer, n, seed=n) == ids  # seeded
    assert (
        len(tokenizer.encode(make_prompt_text(tokenizer, n, seed=1), add_special_tokens=False)) == n
    )


def test_tokenize_via_server_and_fallback(server, tokenizer):
    url, _ = server
    assert tokenize_via_server(url + "/v1", "refmodel", "abc") == [97, 98, 99]
    dead = f"http://127.0.0.1:{_free_port()}"
    assert tokenize_via_server(dead, "refmodel", "abc", timeout=2) is None
    assert count_prompt_tokens("abc", base_url=url, model="refmodel") == 3
    text = make_prompt_text(tokenizer, 20, seed=2)
    assert count_prompt_tokens(text, base_url=dead, tokenizer=tokenizer) == 20


def test_request_is_greedy_with_eos_ignored_like_the_engines_own_tools():
    import json

    body = json.loads(_body("completions", "m", [5, 6, 7], 16, None))
    assert body["prompt"] == [5, 6, 7] and body["max_tokens"] == 16
    assert body["temperature"] == 0.0 and body["ignore_eos"] is True
    assert "min_tokens" not in body  # a per-step penalizer on SGLang; neither tool sends it
    assert body["stream_options"] == {"include_usage": True}
    override = json.loads(_body("chat", "m", "hi", 8, {"temperature": 0.7, "min_tokens": 8}))
    assert override["messages"] == [{"role": "user", "content": "hi"}]
    assert (override["temperature"], override["min_tokens"]) == (0.7, 8)
