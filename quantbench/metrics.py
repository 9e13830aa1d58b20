"""Latency metrics, defined once for every engine and client.

Every figure is derived from raw per-request records (send time, one timestamp per generated
token or chunk), so a new definition never needs a new run. Definitions follow vLLM's benchmark
code; where GuideLLM / AIPerf name the same quantity differently, ``ALIASES`` says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

PERCENTILES = (50, 90, 99)

# Our (vLLM's) name -> what other tools call that quantity.
ALIASES = {
    "tpot": "GuideLLM/AIPerf 'inter-token latency' (ITL); excludes the first token",
    "itl": "vLLM ITL: gap between consecutive content chunks (no peer equivalent)",
    "ttft": "time from request send to the first chunk carrying generated content",
}


@dataclass
class RequestRecord:
    """What one request did, in seconds on one monotonic clock."""

    send_time: float
    token_times: list[float] = field(default_factory=list)  # arrival of each content chunk
    prompt_tokens: int = 0
    output_tokens: int = 0  # as counted by the engine (server usage), never re-tokenised
    connect_time: float | None = None  # connection acquired / request written
    dispatch_delay: float = 0.0  # scheduled send time -> actual send time (client lag)
    error: str | None = None
    finish_reason: str | None = None
    # Prompt tokens the engine served from its prefix cache, as it reports them (None: it does
    # not say): the proof that a measured request computed its whole prompt.
    cached_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.token_times)

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.send_time

    @property
    def e2e(self) -> float:
        return self.token_times[-1] - self.send_time

    @property
    def tpot(self) -> float | None:
        """Mean time per output token after the first; None with a single token."""
        if self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)

    @property
    def itls(self) -> list[float]:
        return list(np.diff(self.token_times)) if len(self.token_times) > 1 else []


def summarize(values, name: str) -> dict[str, float]:
    """mean / median / p90 / p99 of one metric, in milliseconds."""
    arr = np.asarray([v for v in values if v is not None], dtype=float) * 1000.0
    if arr.size == 0:
        return {f"{name}_{s}_ms": float("nan") for s in ("mean", "median", "p90", "p99")}
    out = {f"{name}_mean_ms": float(arr.mean())}
    for p, label in zip(PERCENTILES, ("median", "p90", "p99")):
        out[f"{name}_{label}_ms"] = float(np.percentile(arr, p))
    return out


@dataclass
class BenchmarkMetrics:
    """Aggregate figures of one scenario run (vLLM's definitions)."""

    completed: int
    failed: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    latency: dict[str, float]  # {ttft,tpot,itl,e2el}_{mean,median,p90,p99}_ms
    dispatch_delay_mean_ms: float
    goodput: float | None = None

    def as_dict(self) -> dict:
        flat = asdict(self)
        flat.update(flat.pop("latency"))
        return flat


def compute_metrics(
    records: list[RequestRecord],
    duration_s: float | None = None,
    slo_ms: dict[str, float] | None = None,
) -> BenchmarkMetrics:
    """Aggregate raw records. ``duration_s`` defaults to first send -> last token.

    ``slo_ms`` (e.g. {"ttft": 200, "tpot": 50, "e2el": 5000}) turns on goodput: completed
    requests per second that met every given SLO.
    """
    ok = [r for r in records if r.ok]
    if duration_s is None:
        duration_s = (
            max(r.token_times[-1] for r in ok) - min(r.send_time for r in ok) if ok else 0.0
        )
    in_tok = sum(r.prompt_tokens for r in ok)
    out_tok = sum(r.output_tokens for r in ok)
    per = 1.0 / duration_s if duration_s > 0 else float("nan")
    latency: dict[str, float] = {}
    latency.update(summarize([r.ttft for r in ok], "ttft"))
    latency.update(summarize([r.tpot for r in ok], "tpot"))
    latency.update(summarize([g for r in ok for g in r.itls], "itl"))
    latency.update(summarize([r.e2e for r in ok], "e2el"))
    goodput = None
    if slo_ms:
        values = {
            "ttft": lambda r: r.ttft,
            "tpot": lambda r: r.tpot or 0.0,
            "e2el": lambda r: r.e2e,
        }
        good = [r for r in ok if all(values[k](r) * 1000.0 <= limit for k, limit in slo_ms.items())]
        goodput = len(good) * per
    delays = [r.dispatch_delay for r in records]
    return BenchmarkMetrics(
        completed=len(ok),
        failed=len(records) - len(ok),
        duration_s=duration_s,
        total_input_tokens=in_tok,
        total_output_tokens=out_tok,
        request_throughput=len(ok) * per,
        output_throughput=out_tok * per,
        total_token_throughput=(in_tok + out_tok) * per,
        latency=latency,
        dispatch_delay_mean_ms=float(np.mean(delays) * 1000.0) if delays else 0.0,
        goodput=goodput,
    )


def qwen_speed(prompt_tokens: int, output_tokens: int, seconds: float) -> dict[str, float]:
    """The Qwen speed-benchmark figures for one batch-1 request.

    The Qwen page defines speed as (prompt + generated tokens) / time; Qwen's public
    Transformers script divides generated tokens only. Both are kept, named.
    """
    return {
        "speed_tok_s": (prompt_tokens + output_tokens) / seconds,
        "decode_speed_tok_s": output_tokens / seconds,
    }
