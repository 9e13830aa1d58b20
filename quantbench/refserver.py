"""Reference OpenAI-compatible streaming server of known timing, logging ground truth.

Each request gets its first content chunk ``ttft`` after the request was fully received and
then one chunk per token every ``itl``, scheduled against absolute deadlines from the receive
time so a late callback never shifts the rest of the stream. Every request's truth (receive
time, the time each chunk was actually written, lag behind schedule) goes to a JSONL log, one
line per request, on ``time.perf_counter()`` -- CLOCK_MONOTONIC on Linux, which is one clock
for all processes, so the client's timestamps and ours compare directly.

Raw asyncio protocols instead of a web framework: at 1024 streams x 100 chunks/s every
microsecond per chunk counts, and the server shares its cores with the client under test.

Tokenizer: one token per UTF-8 byte (ids 0..255) unless ``--tokenizer tokenizer.json`` is given.
Per-request overrides in the body: ``ref_ttft_ms``, ``ref_itl_ms`` (for tests).

Capacity model (``--slots N``; the `sweep` scenario's test): at most N requests run at once, the
rest wait in a FIFO queue. A request's first token comes ``ttft`` after it is admitted to a
slot, and each later token one decode step after the one before, where a step takes
``step + step_per_running x running`` (running: the admitted requests at that moment, itself
included). So its saturation throughput and the highest rate whose TPOT meets an SLO are known
in advance (``capacity_model``). ``GET /metrics`` answers in vLLM's Prometheus names
(vllm:num_requests_running, vllm:num_requests_waiting, vllm:kv_cache_usage_perc,
vllm:num_preemptions_total) in every mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

perf = time.perf_counter
if sys.platform == "linux":
    # Truth and client timestamps must be on one clock shared across processes.
    assert "CLOCK_MONOTONIC" in time.get_clock_info("perf_counter").implementation

LATE_S = 0.005  # a chunk written this far behind its deadline (half an ITL at 10 ms) is late


@dataclass
class Config:
    model: str = "refmodel"
    ttft_s: float = 0.05
    itl_s: float = 0.01
    eos_after: int | None = None  # natural length; None = never emits EOS
    truth_fd: int | None = None
    tokenizer: object | None = None
    uvloop: bool = False
    prefix_cache: bool = False  # serve shared prompt prefixes "from cache", as the engines do
    cache_report: bool = False  # usage.prompt_tokens_details.cached_tokens on every request
    log_prompts: bool = False  # each request's prompt ids in the truth log
    plant_cache_hit: int | None = None  # the N-th request reports half its prompt cached
    # Faults (tests/test_faults.py): what a broken engine does to a completion request.
    fault_status: int | None = None  # answer every completion with this HTTP status
    fault_hang: bool = False  # accept completions, never answer
    fault_malformed_sse: bool = False  # stream events that are not JSON
    fault_kill_parent: bool = False  # SIGKILL the process that started us (the benchmark job)
    # Capacity model (module docstring): decode slots, and the step time's two terms.
    slots: int | None = None
    step_s: float | None = None  # None: itl_s
    step_per_running_s: float = 0.0
    kv_cache_tokens: int | None = None  # KV usage = running tokens / this (else running / slots)


def capacity_model(
    slots: int,
    ttft_s: float,
    step_s: float,
    step_per_running_s: float,
    output_len: int,
    slo_tpot_s: float | None = None,
) -> dict:
    """What the capacity model gives, analytically, for requests of `output_len` tokens.

    Saturation (every slot busy): a request holds its slot for S = ttft + (L-1) x (step +
    k x slots), so the server completes slots / S requests/s. Below saturation at a steady
    rate λ (evenly spaced arrivals), Little's law gives the running count r = λ x S(r), with
    S(r) = ttft + (L-1) x (step + k x r); TPOT is step + k x r. The highest rate whose TPOT
    meets an SLO T runs r_T = (T - step) / k requests: λ_T = r_T / (ttft + (L-1) x T), as long
    as r_T fits the slots (else requests queue and TTFT grows: λ_T is saturation's).
    """
    gaps = output_len - 1
    service = ttft_s + gaps * (step_s + step_per_running_s * slots)
    out = {
        "saturation_request_throughput": slots / service,
        "saturation_output_throughput": slots * output_len / service,
        "saturation_tpot_s": step_s + step_per_running_s * slots,
    }
    if slo_tpot_s is not None and step_per_running_s > 0:
        running = min((slo_tpot_s - step_s) / step_per_running_s, slots)
        out["running_at_slo"] = running
        out["max_rate_under_slo"] = running / (ttft_s + gaps * slo_tpot_s)
    return out


def _count_tokens(cfg: Config, text: str) -> list[int]:
    if cfg.tokenizer is not None:
        return cfg.tokenizer.encode(text, add_special_tokens=False).ids
    return list(text.encode())


def _sse(obj: dict | str) -> bytes:
    """One SSE event framed as one HTTP/1.1 chunk."""
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    payload = b"data: " + data.encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class _Stream:
    """One streaming response: a chain of ``call_at`` callbacks at absolute deadlines."""

    __slots__ = (
        "chunk",
        "deadlines",
        "extra",
        "handle",
        "i",
        "lags",
        "last",
        "n",
        "proto",
        "prompt_tokens",
        "rid",
        "state",
        "t_first_byte",
        "t_recv",
        "tail",
        "times",
    )

    def __init__(self, proto, rid, t_first_byte, t_recv, n, ttft, itl, chunk, last, tail, extra):
        self.proto, self.rid, self.n, self.i = proto, rid, n, 0
        self.t_first_byte, self.t_recv = t_first_byte, t_recv
        self.deadlines = [t_recv + ttft + k * itl for k in range(n)]
        self.prompt_tokens = extra.get("prompt_tokens", 0)
        self.times: list[float] = []
        self.lags: list[float] = []
        self.chunk, self.last, self.tail, self.extra = chunk, last, tail, extra
        self.handle = None
        self.state = "streaming"

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        srv = self.proto.server
        if srv.cfg.slots:  # admitted now: the first token a prefill after this, then steps
            srv.running += 1
            t = perf()
            self.extra["queued_ms"] = (t - self.t_recv) * 1e3
            self.extra["running_at_admit"] = srv.running
            self.deadlines = [t + self.deadlines[0] - self.t_recv]
        if self.n == 0:
            self.proto.transport.write(self.tail)
            self.finish(perf())
            return
        self.handle = loop.call_at(self.deadlines[0], self.step)

    def step(self) -> None:
        t = perf()
        i = self.i
        last = i == self.n - 1
        # One write per token: the final token, usage and [DONE] go together.
        self.proto.transport.write(self.last + self.tail if last else self.chunk)
        self.times.append(t)
        self.lags.append(t - self.deadlines[i])
        self.i = i + 1
        if last:
            self.finish(t)
        else:
            if len(self.deadlines) == i + 1:  # capacity model: this step's time, now
                self.deadlines.append(self.deadlines[i] + self.proto.server.step_s())
            self.handle = self.proto.loop.call_at(self.deadlines[i + 1], self.step)

    def finish(self, t_end: float, state: str = "done") -> None:
        self.state = state
        self.handle = None
        self.proto.stream_done(self, t_end)

    def truth(self, t_end: float) -> dict:
        lags = self.lags or [0.0]
        return {
            "id": self.rid,
            "pid": os.getpid(),
            "state": self.state,
            "first_byte_time": self.t_first_byte,
            "recv_time": self.t_recv,
            "chunk_times": self.times,
            "end_time": t_end,
            "max_lag_ms": max(lags) * 1e3,
            "mean_lag_ms": sum(lags) / len(lags) * 1e3,
            "late_chunks": sum(lag > LATE_S for lag in lags),
            "behind": max(lags) > LATE_S,
            **self.extra,
        }


class _Server:
    """Per-process state: config, live stream count, truth log writer."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.active = 0
        self.max_active = 0
        self.seen_prompts: list[tuple[int, ...]] = []
        self.requests = 0
        self.running = 0  # capacity model: requests holding a slot
        self.waiting: deque = deque()  # capacity model: requests queued for a slot
        self.streams: set = set()

    def step_s(self) -> float:
        """One decode step under the capacity model, at the current running count."""
        cfg = self.cfg
        base = cfg.itl_s if cfg.step_s is None else cfg.step_s
        return base + cfg.step_per_running_s * self.running

    def admit(self, stream, loop) -> None:
        """Start `stream` now, or queue it while every slot is taken."""
        if self.cfg.slots and self.running >= self.cfg.slots:
            self.waiting.append(stream)
        else:
            stream.start(loop)

    def released(self, stream, loop) -> None:
        """`stream` ended: free its slot and admit the next waiting request."""
        if not self.cfg.slots:
            return
        if stream in self.waiting:  # a queued request whose client went away
            self.waiting.remove(stream)
            return
        self.running -= 1
        while self.waiting and self.running < self.cfg.slots:
            self.waiting.popleft().start(loop)

    def metrics_text(self) -> str:
        """Prometheus text in vLLM's metric names (fractions for KV usage, as vLLM reports)."""
        cfg = self.cfg
        running = self.running if cfg.slots else self.active
        if cfg.kv_cache_tokens:
            held = sum(s.prompt_tokens + len(s.times) for s in self.streams if s.handle)
            usage = held / cfg.kv_cache_tokens
        else:
            usage = running / cfg.slots if cfg.slots else 0.0
        label = f'{{model_name="{cfg.model}"}}'
        lines = []
        for name, kind, value in (
            ("vllm:num_requests_running", "gauge", running),
            ("vllm:num_requests_waiting", "gauge", len(self.waiting)),
            ("vllm:kv_cache_usage_perc", "gauge", usage),
            ("vllm:num_preemptions_total", "counter", 0),
        ):
            lines += [f"# TYPE {name.removesuffix('_total')} {kind}", f"{name}{label} {value}"]
        return "\n".join(lines) + "\n"

    def cached_tokens(self, ids: list[int]) -> int:
        """Prompt tokens a prefix cache would serve: the longest prefix this prompt shares with
        an earlier one (token granularity, as SGLang's radix cache); 0 with the cache off. The
        planted hit stands for a cache the workflow failed to control."""
        self.requests += 1
        cached = 0
        if self.cfg.prefix_cache:
            for seen in self.seen_prompts:
                n = 0
                while n < min(len(seen), len(ids)) and seen[n] == ids[n]:
                    n += 1
                cached = max(cached, n)
            self.seen_prompts.append(tuple(ids))
        if self.requests == self.cfg.plant_cache_hit:
            cached = max(cached, len(ids) // 2)
        return min(cached, max(len(ids) - 1, 0))  # the last prompt token is always computed

    def flush(self) -> None:
        self.seen_prompts.clear()

    def log(self, rec: dict) -> None:
        if self.cfg.truth_fd is not None:
            # O_APPEND + one write per line: lines from several workers never interleave.
            os.write(self.cfg.truth_fd, (json.dumps(rec, separators=(",", ":")) + "\n").encode())


class _Conn(asyncio.Protocol):
    def __init__(self, server: _Server):
        self.server, self.cfg = server, server.cfg
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.t_first_byte = 0.0
        self.stream: _Stream | None = None
        self.close_after = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a server given its socket leaves Nagle on: a token written
            # while the response head waits for the client's (delayed) ACK would lag ~40 ms
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        s = self.stream
        if s is not None and s.handle is not None:
            s.handle.cancel()
            s.finish(perf(), "aborted")
        elif s is not None and s in self.server.waiting:  # never admitted to a slot
            s.finish(perf(), "aborted")

    def data_received(self, data: bytes) -> None:
        t = perf()
        if not self.buf:
            self.t_first_byte = t
        self.buf += data
        while self.stream is None:  # no pipelining while a response streams
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", 0))
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            method, path, _ = head[0].split(" ", 2)
            self.close_after = headers.get("connection", "").lower() == "close"
            first_byte, self.t_first_byte = self.t_first_byte, t
            self.handle(method, path.split("?")[0], headers, body, first_byte, t)

    # -- responses -------------------------------------------------------------------------
    def respond(self, status: int, obj: dict | None = None) -> None:
        body = json.dumps(obj).encode() if obj is not None else b""
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, reason.encode(), len(body), body)
        )
        if self.close_after:
            self.transport.close()

    def handle(self, method, path, headers, body, t_first_byte, t_recv) -> None:
        cfg = self.cfg
        if path == "/health":
            return self.respond(200)
        if path == "/metrics":
            text = self.server.metrics_text().encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(text), text)
            )
            if self.close_after:
                self.transport.close()
            return None
        if path == "/v1/models":
            return self.respond(
                200,
                {
                    "object": "list",
                    "data": [{"id": cfg.model, "object": "model", "owned_by": "quantbench"}],
                },
            )
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return self.respond(400, {"error": {"message": "invalid JSON"}})
        if path in ("/flush_cache", "/reset_prefix_cache") and method == "POST":
            self.server.flush()
            return self.respond(200, {})
        if path == "/tokenize" and method == "POST":
            text = req.get("prompt")
            if text is None:
                text = "".join(m.get("content") or "" for m in req.get("messages", []))
            ids = _count_tokens(cfg, text)
            return self.respond(200, {"tokens": ids, "count": len(ids), "max_model_len": 1 << 20})
        chat = path == "/v1/chat/completions"
        if path not in ("/v1/completions", "/v1/chat/completions") or method != "POST":
            return self.respond(404, {"error": {"message": f"no route {method} {path}"}})
        if cfg.fault_kill_parent:
            os.kill(os.getppid(), signal.SIGKILL)
        if cfg.fault_hang:
            return None
        if cfg.fault_status:
            return self.respond(cfg.fault_status, {"error": {"message": "injected fault"}})
        if cfg.fault_malformed_sse and req.get("stream"):
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + _sse('{"choices": [{"text": " a", "finish_')
                + _sse("<html>not an event</html>")
                + b"0\r\n\r\n"
            )
            return None
        if chat:
            text = "".join(m.get("content") or "" for m in req.get("messages", []))
            prompt_ids = _count_tokens(cfg, text)
        else:
            p = req.get("prompt", "")
            prompt_ids = [int(t) for t in p] if isinstance(p, list) else _count_tokens(cfg, p)
        prompt_tokens = len(prompt_ids)
        cached = self.server.cached_tokens(prompt_ids)
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens") or 16
        n = max_tokens
        if cfg.eos_after is not None and not req.get("ignore_eos"):
            n = max(req.get("min_tokens") or 0, min(max_tokens, cfg.eos_after))
        finish = "length" if n == max_tokens else "stop"
        ttft = req.get("ref_ttft_ms", cfg.ttft_s * 1e3) / 1e3
        itl = req.get("ref_itl_ms", cfg.itl_s * 1e3) / 1e3
        rid = headers.get("x-request-id", "")
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n,
            "total_tokens": prompt_tokens + n,
        }
        if cfg.cache_report:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        extra = {
            "endpoint": "chat" if chat else "completions",
            "prompt_tokens": prompt_tokens,
            "output_tokens": n,
            "ttft_ms": ttft * 1e3,
            "itl_ms": itl * 1e3,
            "cached_tokens": cached,
        }
        if cfg.log_prompts:
            extra["prompt_ids"] = prompt_ids
        if not req.get("stream"):
            return self._respond_whole(chat, n, usage, finish, ttft + max(n - 1, 0) * itl)
        base = {"id": "cmpl-" + rid, "created": int(time.time()), "model": cfg.model}
        # ref_empty_text: every token's text is empty, as when the tokenizer lacks the ids the
        # model draws (a dummy model's small tokenizer) or a token is half a UTF-8 character.
        piece = "" if req.get("ref_empty_text") else " a"
        if chat:
            base["object"] = "chat.completion.chunk"

            def choice(fr):
                return {"index": 0, "delta": {"content": piece}, "finish_reason": fr}
        else:
            base["object"] = "text_completion"

            def choice(fr):
                return {"index": 0, "text": piece, "logprobs": None, "finish_reason": fr}

        tail = b""
        so = req.get("stream_options") or {}
        if so.get("include_usage"):
            tail += _sse({**base, "choices": [], "usage": usage})
        tail += _sse("[DONE]") + b"0\r\n\r\n"
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        if chat:  # like vLLM: a role-only first chunk right away, carrying no generated text
            self.transport.write(
                _sse(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": ""},
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            )
        srv = self.server
        srv.active += 1
        srv.max_active = max(srv.max_active, srv.active)
        extra["active_at_recv"] = srv.active
        self.stream = _Stream(
            self,
            rid,
            t_first_byte,
            t_recv,
            n,
            ttft,
            itl,
            _sse({**base, "choices": [choice(None)]}),
            _sse({**base, "choices": [choice(finish)]}),
            tail,
            extra,
        )
        srv.streams.add(self.stream)
        srv.admit(self.stream, self.loop)

    def _respond_whole(self, chat, n, usage, finish, delay) -> None:
        text = " a" * n
        choice = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            if chat
            else {"index": 0, "text": text, "finish_reason": finish}
        )
        obj = {
            "id": "cmpl-ref",
            "object": "chat.completion" if chat else "text_completion",
            "model": self.cfg.model,
            "choices": [choice],
            "usage": usage,
        }
        self.loop.call_later(delay, self.respond, 200, obj)

    def stream_done(self, s: _Stream, t_end: float) -> None:
        self.stream = None
        srv = self.server
        srv.active -= 1
        srv.streams.discard(s)
        srv.released(s, self.loop)
        rec = s.truth(t_end)
        rec["max_active_proc"] = srv.max_active
        srv.log(rec)
        if self.close_after and s.state == "done":
            self.transport.close()
        elif self.buf and s.state == "done":
            self.data_received(b"")


# -- process management ---------------------------------------------------------------------
def _listen(host: str, port: int, n: int) -> list[socket.socket]:
    """n sockets on one port via SO_REUSEPORT, so the kernel spreads connections over workers."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if n > 1:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
        port = s.getsockname()[1]  # port 0: the rest join the port the first one got
        s.listen(4096)  # 1024 simultaneous connects overflow asyncio's default backlog of 100
        s.setblocking(False)
        socks.append(s)
    return socks


def _serve(sock: socket.socket, cfg: Config) -> None:
    async def main():
        loop = asyncio.get_running_loop()
        srv = _Server(cfg)
        server = await loop.create_server(lambda: _Conn(srv), sock=sock)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    factory = None
    if cfg.uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m quantbench.refserver", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 = any free port (printed)")
    ap.add_argument("--model", default="refmodel")
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument(
        "--eos-after", type=int, default=None, help="natural output length when ignore_eos is false"
    )
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--truth-log", default=None, help="JSONL, one line per finished request")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (default: bytes)")
    ap.add_argument(
        "--uvloop",
        action="store_true",
        help="uvloop, if installed: cheaper per chunk, but libuv timers have 1 ms resolution"
        " (a chunk may go up to 1 ms early; the truth log has the real times)",
    )
    ap.add_argument(
        "--prefix-cache", action="store_true", help="serve shared prompt prefixes from a cache"
    )
    ap.add_argument(
        "--cache-report",
        action="store_true",
        help="report usage.prompt_tokens_details.cached_tokens (as vLLM/SGLang can)",
    )
    ap.add_argument("--log-prompts", action="store_true", help="prompt ids in the truth log")
    ap.add_argument(
        "--plant-cache-hit",
        type=int,
        default=None,
        metavar="N",
        help="the N-th request reports half its prompt as cached (tests the flagging)",
    )
    capacity = ap.add_argument_group("capacity model (module docstring; the sweep scenario's test)")
    capacity.add_argument(
        "--slots", type=int, default=None, help="most requests running at once; others queue"
    )
    capacity.add_argument(
        "--step-ms", type=float, default=None, help="decode step at no load (default: --itl-ms)"
    )
    capacity.add_argument(
        "--step-ms-per-running",
        type=float,
        default=0.0,
        help="what each running request adds to a decode step",
    )
    capacity.add_argument(
        "--kv-cache-tokens",
        type=int,
        default=None,
        help="KV pool size for vllm:kv_cache_usage_perc (default: running / slots)",
    )
    faults = ap.add_argument_group("faults (tests/test_faults.py)")
    faults.add_argument(
        "--fault-status",
        type=int,
        default=None,
        metavar="CODE",
        help="answer every completion request with this HTTP status",
    )
    faults.add_argument(
        "--fault-hang", action="store_true", help="accept completion requests and never answer"
    )
    faults.add_argument(
        "--fault-malformed-sse", action="store_true", help="stream events that are not JSON"
    )
    faults.add_argument(
        "--fault-kill-parent",
        action="store_true",
        help="SIGKILL the parent process at the first completion request",
    )
    faults.add_argument(
        "--fault-port-taken",
        metavar="PIDFILE",
        default=None,
        help="start another server on our port in its own session (its pid to "
        "PIDFILE), then never bind: a foreign server answers in our place",
    )
    faults.add_argument(
        "--fault-exit",
        type=int,
        default=None,
        metavar="CODE",
        help="print an error and exit with CODE before listening",
    )
    a = ap.parse_args(argv)
    if a.fault_exit is not None:
        print(f"RuntimeError: injected start-up failure (exit {a.fault_exit})", flush=True)
        sys.exit(a.fault_exit)
    if a.fault_port_taken:
        _take_port(a.host, a.port, a.fault_port_taken)
        time.sleep(3600)  # a server still loading, whose port someone else answers on
        return
    tok = None
    if a.tokenizer:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(a.tokenizer)
    fd = None
    if a.truth_log:
        fd = os.open(a.truth_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    cfg = Config(
        a.model,
        a.ttft_ms / 1e3,
        a.itl_ms / 1e3,
        a.eos_after,
        fd,
        tok,
        a.uvloop,
        prefix_cache=a.prefix_cache,
        cache_report=a.cache_report,
        log_prompts=a.log_prompts,
        plant_cache_hit=a.plant_cache_hit,
        fault_status=a.fault_status,
        fault_hang=a.fault_hang,
        fault_malformed_sse=a.fault_malformed_sse,
        fault_kill_parent=a.fault_kill_parent,
        slots=a.slots,
        step_s=None if a.step_ms is None else a.step_ms / 1e3,
        step_per_running_s=a.step_ms_per_running / 1e3,
        kv_cache_tokens=a.kv_cache_tokens,
    )
    socks = _listen(a.host, a.port, a.workers)
    port = socks[0].getsockname()[1]
    print(f"READY http://{a.host}:{port} workers={a.workers}", flush=True)
    if a.workers == 1:
        _serve(socks[0], cfg)
        return
    pids = []
    for s in socks:
        pid = os.fork()
        if pid == 0:
            for other in socks:
                if other is not s:
                    other.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                _serve(s, cfg)
            finally:
                os._exit(0)
        pids.append(pid)
    for s in socks:
        s.close()

    def forward(sig, _frame):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in pids:
        os.waitpid(pid, 0)


def _take_port(host: str, port: int, pidfile: str) -> None:
    """Start a plain reference server on `port` outside our session and process group, as a
    server left over from an earlier run would be; wait until it listens."""
    cmd = [sys.executable, "-m", "quantbench.refserver", "--host", host, "--port", str(port)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    with open(pidfile, "w") as f:
        f.write(f"{proc.pid}\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect((host, port))
            return
        time.sleep(0.1)


def vllm_cli(argv: list[str]) -> None:
    """`serve MODEL --host H --port P --served-model-name N [vLLM flags]`, as `vllm serve` takes
    them: the reference server standing in for vLLM in a workflow (tests/test_faults.py). Other
    vLLM flags are ignored. `--faults-from FILE` (JSON: served model name, or "*" for every
    model, -> extra arguments of this server) lets a test break one cell and fix it by editing
    the file, without touching the workflow's config."""
    ap = argparse.ArgumentParser(prog="refserver serve", add_help=False)
    ap.add_argument("model_dir")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", default="8000")
    ap.add_argument("--served-model-name", default="refmodel")
    ap.add_argument("--faults-from", default=None)
    ap.add_argument("--tensor-parallel-size", type=int, default=1)
    known, _ = ap.parse_known_args(argv)
    extra: list[str] = []
    if known.faults_from and os.path.exists(known.faults_from):
        with open(known.faults_from) as f:
            table = json.load(f)
        extra = [*table.get("*", []), *table.get(known.served_model_name, [])]
    args = ["--host", known.host, "--port", known.port, "--model", known.served_model_name]
    # A tensor-parallel server is a process tree (one worker per GPU): forked workers stand in.
    if known.tensor_parallel_size > 1:
        args += ["--workers", str(known.tensor_parallel_size)]
    # vLLM's cache flags, as vLLM reads them: prefix caching on unless switched off.
    if "--no-enable-prefix-caching" not in argv:
        args.append("--prefix-cache")
    if "--enable-prompt-tokens-details" in argv:
        args.append("--cache-report")
    print(f"refserver standing in for `vllm serve {known.model_dir}`: {extra}", flush=True)
    main(args + extra)


@contextlib.contextmanager
def start_refserver(*args: str, ready_timeout: float = 20.0) -> Iterator[str]:
    """Run the server in a subprocess on a free loopback port; yields its base URL."""
    cmd = [sys.executable, "-m", "quantbench.refserver", "--port", "0", *args]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + ready_timeout
        line = proc.stdout.readline()  # the server prints READY once it listens
        if not line.startswith("READY") or time.monotonic() > deadline:
            raise RuntimeError(f"refserver did not start: {line!r}")
        yield line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_truth(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def max_overlap(truth: list[dict]) -> int:
    """Most requests in flight at once across all workers (receive -> last write)."""
    events = sorted([(t["recv_time"], 1) for t in truth] + [(t["end_time"], -1) for t in truth])
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        vllm_cli(sys.argv[2:])
    else:
        main()
