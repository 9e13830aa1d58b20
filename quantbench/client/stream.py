"""Streaming load client for OpenAI-compatible servers: a measuring instrument.

Timing (all on ``time.perf_counter()``, CLOCK_MONOTONIC on Linux, shared with the refserver):

* ``send_time``: when the request was handed to the socket. aiohttp buffers the headers and
  writes them together with the body; its ``on_request_chunk_sent`` trace fires synchronously
  just before that write (``on_request_headers_sent`` is the fallback for bodiless requests).
  Connection setup and client-side queueing are therefore *not* in TTFT; they are recorded
  separately as ``connect_time`` (connection acquired) and ``dispatch_delay`` (scheduled -> sent).
* chunk arrival: the kernel's receive timestamp of the bytes (``SO_TIMESTAMPNS``, read with
  ``recvmsg``; Linux, asyncio's own event loop), so the event loop's delay between the bytes
  arriving and Python reading them is not in TTFT/ITL at all. Elsewhere (uvloop, whose C
  transports read the socket themselves, or no timestamp in the reply) the stamp is taken when
  aiohttp's protocol receives the bytes (``data_received``), not when our coroutine gets round
  to reading them. Each record names its stamp source. Loopback TCP merges queued segments, so
  bytes that waited in the socket for a later read carry the latest arrival's stamp.
* TTFT stops at the first chunk that carries *generated content*: non-empty ``text``,
  ``content``, ``reasoning_content`` or ``reasoning``. Role-only chat chunks (vLLM sends
  ``{"role": "assistant", "content": ""}`` at once) and usage chunks do not count. Every chunk's
  time and content flag is kept in the raw record, so other definitions can be recomputed.
* output/prompt tokens come from the server's final ``usage`` chunk, never re-tokenised.

Traps handled: aiohttp's line limit at long contexts (vLLM issue 39963) -- we read with
``iter_any`` and split SSE lines ourselves; the connection pool is sized to the concurrency (not
aiohttp's default 100); a ``ramp_s`` spreads the first wave of connects (1024 simultaneous
SYNs overflow small listen backlogs). With rate=inf and identical output lengths, requests
finish and restart in synchronised waves; use a finite ``request_rate`` (Poisson/gamma jitter)
when that matters.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Sequence
from itertools import count

import aiohttp
import numpy as np

from quantbench.client.records import StreamRecord, dump_records, handle_line, load_records
from quantbench.client.stamps import TimedConnector, kernel_stamps_available, perf, trace_config

# Re-exported: a run's records are read and written through this module too.
__all__ = [
    "StreamRecord",
    "arrival_offsets",
    "dump_records",
    "load_records",
    "loop_factory",
    "run_load",
    "run_load_sync",
]


def arrival_offsets(
    n: int, request_rate: float = float("inf"), burstiness: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Send offsets (s) of n requests: gamma intervals of mean 1/rate, shape ``burstiness``.

    burstiness 1 is a Poisson process; < 1 burstier, > 1 more regular (vLLM's definition).
    The first request goes at 0. rate=inf: all at 0 (concurrency then bounds them).
    """
    if n <= 0:
        return np.zeros(0)
    if request_rate == float("inf"):
        return np.zeros(n)
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (request_rate * burstiness), size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def _body(endpoint: str, model: str, prompt, output_len: int, extra: dict | None) -> bytes:
    # EOS ignored, so exactly max_tokens come back (the count is verified from `usage`); no
    # `min_tokens`, which neither engine's own tool sends: it engages SGLang's penalizer and
    # vLLM's min-tokens processor on every decode step. Greedy, as `sglang.bench_serving`
    # sends (`vllm bench serve` 0.24 leaves it to the server): deterministic, and independent
    # of whether a model ships a generation config. `extra` overrides any of it.
    body: dict = {
        "model": model,
        "max_tokens": output_len,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if endpoint == "chat":
        if not isinstance(prompt, str):
            raise ValueError("chat endpoint needs text prompts")
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt if isinstance(prompt, str) else [int(t) for t in prompt]
    body.update(extra or {})
    return json.dumps(body).encode()


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, rec: StreamRecord, timeout_s: float
) -> None:
    """Send one request and fill ``rec``; errors are recorded, never raised."""
    rec.send_time = 0.0
    headers = {"Content-Type": "application/json", "X-Request-Id": rec.request_id}
    buf = b""
    pos = 0  # body bytes consumed so far, to match lines against the protocol's read stamps
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, data=body, headers=headers, trace_request_ctx=rec) as resp:
                if not rec.send_time:
                    rec.send_time = rec.headers_sent_time or perf()
                rec.status = resp.status
                if resp.status != 200:
                    rec.error = f"HTTP {resp.status}: {(await resp.text())[:300]}"
                    return
                proto = resp.connection.protocol if resp.connection else None
                marks = getattr(proto, "qb_marks", None)
                rec.stamp_source = getattr(proto, "qb_stamp_source", "read")
                mi = 0
                async for data in resp.content.iter_any():
                    t_read = perf()
                    buf += data
                    pos += len(data)
                    if marks is not None and getattr(proto, "qb_payload", None) is resp.content:
                        marks = proto.qb_marks  # the list may have been replaced on reuse
                    else:
                        marks = None
                    while (nl := buf.find(b"\n")) >= 0:
                        line, buf = buf[:nl], buf[nl + 1 :]
                        end = pos - len(buf)  # body offset just past this line
                        if not line.startswith(b"data:"):
                            continue
                        t = t_read
                        if marks:
                            while mi < len(marks) - 1 and marks[mi][1] < end:
                                mi += 1
                            if marks[mi][1] >= end:
                                t = marks[mi][0]
                        if handle_line(rec, line[5:].strip(), t):
                            return
                if not rec.error and not rec.token_times:
                    rec.error = "stream ended without content"
    except TimeoutError:
        rec.error = f"timeout after {timeout_s}s"
    except aiohttp.ClientError as e:
        rec.error = f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 -- a measuring run must survive any single request
        rec.error = f"{type(e).__name__}: {e}"
    finally:
        if not rec.send_time:
            rec.send_time = rec.headers_sent_time or perf()
        if not rec.usage_seen and rec.error is None:
            # No usage chunk: fall back to content-chunk count (flagged by usage_seen=False).
            rec.output_tokens = len(rec.token_times)


async def run_load(
    base_url: str,
    model: str,
    prompts: Sequence[str | Sequence[int]],
    output_len: int,
    *,
    endpoint: str = "completions",
    concurrency: int | None = None,
    request_rate: float = float("inf"),
    burstiness: float = 1.0,
    seed: int = 0,
    warmup: int = 0,
    warmup_prompts: Sequence[str | Sequence[int]] | None = None,
    timeout_s: float = 600.0,
    extra_body: dict | None = None,
    expected_prompt_tokens: int | Sequence[int] | None = None,
    ramp_s: float = 0.0,
    id_prefix: str = "qb",
    raw_path: str | None = None,
    kernel_stamps: bool = True,
) -> list[StreamRecord]:
    """Send one request per prompt, streaming, and return one record per request (in order).

    ``endpoint``: "completions" or "chat". Prompts are text, or token ids (completions only).
    ``concurrency``: most requests in flight (None = unbounded). ``warmup``: requests sent first
    and not recorded; they re-send the first prompts unless ``warmup_prompts`` gives their own
    (which a cache-free measurement needs: a re-sent prompt is a prefix-cache hit).
    ``expected_prompt_tokens`` defaults to len(ids) for id prompts; a
    different server count is flagged (``prompt_mismatch``). ``ramp_s`` spreads the first
    ``concurrency`` sends evenly over that many seconds. ``raw_path``: JSONL dump, one dict per
    request with every timestamp. ``kernel_stamps``: chunk times from the kernel's receive
    timestamps where the event loop allows it (module docstring).
    """
    base = base_url.rstrip("/").removesuffix("/v1")
    url = base + ("/v1/chat/completions" if endpoint == "chat" else "/v1/completions")
    n = len(prompts)
    limit = concurrency or max(n, 1)
    sem = asyncio.Semaphore(limit)
    if isinstance(expected_prompt_tokens, int) or expected_prompt_tokens is None:
        exp = [
            expected_prompt_tokens
            if expected_prompt_tokens is not None
            else (None if isinstance(p, str) else len(p))
            for p in prompts
        ]
    else:
        exp = list(expected_prompt_tokens)
    # Serialise all bodies before the clock starts: no JSON work on the send path.
    bodies = [_body(endpoint, model, p, output_len, extra_body) for p in prompts]
    offsets = arrival_offsets(n, request_rate, burstiness, seed)
    if ramp_s > 0:
        first = min(n, limit)
        offsets[:first] = np.maximum(offsets[:first], np.arange(first) * ramp_s / first)

    connector = TimedConnector(
        kernel_stamps=kernel_stamps,
        limit=limit,
        limit_per_host=limit,
        force_close=False,
        enable_cleanup_closed=False,
    )
    # read_bufsize: long SSE events must not stall at aiohttp's 256 KiB default buffer.
    async with aiohttp.ClientSession(
        connector=connector,
        trace_configs=[trace_config()],
        timeout=aiohttp.ClientTimeout(total=None),
        read_bufsize=1 << 22,
        auto_decompress=False,
    ) as session:

        async def guarded(body, rec):
            async with sem:
                await _one(session, url, body, rec, timeout_s)

        if warmup_prompts is not None:
            warm = [_body(endpoint, model, p, output_len, extra_body) for p in warmup_prompts]
        else:
            warm = [bodies[i % n] for i in range(warmup)]
        if warm:
            wids = count()
            await asyncio.gather(
                *[
                    guarded(body, StreamRecord(0.0, request_id=f"{id_prefix}-warmup-{next(wids)}"))
                    for body in warm
                ]
            )
        records = [
            StreamRecord(
                0.0,
                request_id=f"{id_prefix}-{i}",
                expected_prompt_tokens=exp[i],
                expected_output_tokens=output_len,
            )
            for i in range(n)
        ]
        # A full GC pass stalls the loop for tens of ms (measured: 40 ms at 64 streams), and
        # every chunk arriving meanwhile gets stamped that late. So: no GC while measuring;
        # what existed before is frozen out of later passes, cycles made now are freed after.
        gc_was_enabled = gc.isenabled()
        gc.freeze()
        gc.disable()
        t0 = perf() + 0.001  # small lead so the first send is on schedule

        async def scheduled(i):
            rec = records[i]
            rec.scheduled_time = t0 + float(offsets[i])
            # A loop: libuv (uvloop) timers have 1 ms resolution and may wake us early.
            while (delay := rec.scheduled_time - perf()) > 0:
                await asyncio.sleep(delay)
            async with sem:
                await _one(session, url, bodies[i], rec, timeout_s)
            rec.dispatch_delay = max(0.0, rec.send_time - rec.scheduled_time)

        try:
            await asyncio.gather(*[scheduled(i) for i in range(n)])
        finally:
            gc.unfreeze()
            if gc_was_enabled:
                gc.enable()
    if raw_path:
        dump_records(records, raw_path)
    return records


def loop_factory(kind: str = "auto"):
    """Event loop for a run. "auto": asyncio's own loop where the kernel gives receive
    timestamps (Linux), since only its transports read through a socket we can swap for
    ``recvmsg``; else uvloop when installed, else asyncio's.

    Measured on 2 shared cores against the reference server (benchmarks/README.md): kernel
    stamps took the ITL p99 error at 16-64 streams from +0.2-0.6 ms (uvloop, read-time stamps)
    to 0.00 ms and TPOT's to 0.000 ms, for a client CPU of 19% instead of 12% of a core at 64
    streams. uvloop's cheaper iteration still helps where there are no kernel stamps: it cut
    chunk delivery p99 from 5.2 to 1.3 ms against asyncio's loop with read-time stamps.
    """
    if kind == "asyncio" or (kind == "auto" and kernel_stamps_available()):
        return None
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


def run_load_sync(*args, loop: str = "auto", **kwargs) -> list[StreamRecord]:
    """Blocking wrapper around :func:`run_load`; ``loop`` as in :func:`loop_factory`."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(run_load(*args, **kwargs))


