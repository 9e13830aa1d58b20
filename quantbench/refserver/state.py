"""Per-process server state: one streaming response's schedule of writes, the slots and queue of
the capacity model, the prefix cache, /metrics text and the truth log."""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque

from quantbench.refserver.config import LATE_S, Config, perf


class Stream:
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


class ServerState:
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

