"""The engine's own view of a load: its Prometheus ``/metrics``, scraped while the load runs.

A thread polls ``GET /metrics`` every ``interval_s`` (0.5 s by default) and keeps, per sample,
the running and waiting requests, the KV-cache usage (a fraction) and the preemption counter,
each under one name whatever the engine calls it (``ENGINE_METRICS``): vLLM exposes
``/metrics`` by default; SGLang with ``--enable-metrics`` (the launcher adds it). Samples carry
``time.perf_counter()`` times, the clock of the load client's records, so a point's measured
window can be cut out of the series. The text format is parsed here (no prometheus_client in
the workflow's environment): every sample line of a metric, summed over its label sets (a
data-parallel engine reports one per engine), the KV usage as the largest of them.
"""

from __future__ import annotations

import math
import threading
import time
import urllib.error
import urllib.request

perf = time.perf_counter

# One name per quantity -> the engines' metric names, first found wins. vLLM renamed
# gpu_cache_usage_perc to kv_cache_usage_perc (both fractions, despite the name); a counter is
# exposed with its `_total` suffix. SGLang's preemption is a retraction.
ENGINE_METRICS = {
    "running": ("vllm:num_requests_running", "sglang:num_running_reqs"),
    "waiting": ("vllm:num_requests_waiting", "sglang:num_queue_reqs"),
    "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"),
    "preemptions": (
        "vllm:num_preemptions_total",
        "vllm:num_preemptions",
        "sglang:num_retracted_reqs_total",
        "sglang:num_retracted_reqs",
    ),
}
_MAX = {"kv_usage"}  # a fraction per engine: the fullest one, not the sum


def parse_prometheus(text: str) -> dict[str, list[float]]:
    """Prometheus text exposition -> metric name -> its values (one per label set)."""
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            rest = rest.rpartition("}")[2]
        else:
            name, _, rest = line.partition(" ")
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        out.setdefault(name.strip(), []).append(value)
    return out


def engine_sample(text: str) -> dict[str, float | None]:
    """The quantities of ``ENGINE_METRICS`` in one scrape; None where the engine has none."""
    parsed = parse_prometheus(text)
    sample: dict[str, float | None] = {}
    for key, names in ENGINE_METRICS.items():
        values = next((parsed[n] for n in names if n in parsed), None)
        sample[key] = None if values is None else (max if key in _MAX else sum)(values)
    return sample


class MetricsPoller:
    """``with MetricsPoller(base_url) as poller:`` scrapes while the body runs, once more at
    the end; ``poller.samples`` then holds ``{"t": perf_counter, running, waiting, kv_usage,
    preemptions}`` dicts, and ``poller.error`` the first failure (e.g. no /metrics: 404)."""

    def __init__(self, base_url: str | None, interval_s: float = 0.5, timeout_s: float = 2.0):
        base = (base_url or "").rstrip("/").removesuffix("/v1")
        self.url = base + "/metrics" if base else None
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.samples: list[dict] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scrape(self) -> None:
        if self.url is None:
            return
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as resp:
                text = resp.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError, ValueError) as err:
            self.error = self.error or f"{type(err).__name__}: {err}"[:300]
            return
        self.samples.append({"t": perf(), **engine_sample(text)})

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scrape()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> MetricsPoller:
        if self.url is not None:
            self._thread = threading.Thread(target=self._run, name="metrics-poller", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1)
            self.scrape()  # the state after the load: the counters' end values


def summarize_samples(samples: list[dict], start: float, end: float) -> dict:
    """A point's engine figures over its measured window [start, end] (perf_counter s): most
    running and waiting requests, highest KV usage, and preemptions during it (the counter at
    the last sample after the window minus the last one before it)."""
    inside = [s for s in samples if start <= s["t"] <= end]
    out: dict = {"metrics_samples": len(inside)}
    for key in ("running", "waiting", "kv_usage"):
        vals = [s[key] for s in inside if s.get(key) is not None]
        out[f"max_{key}"] = max(vals) if vals else None
    counts = [(s["t"], s["preemptions"]) for s in samples if s.get("preemptions") is not None]
    before = [c for t, c in counts if t <= start] or [c for _, c in counts[:1]]
    after = [c for t, c in counts if t >= end] or [c for _, c in counts[-1:]]
    out["preemptions"] = after[-1] - before[-1] if before and after else None
    if out["preemptions"] is not None and math.isnan(out["preemptions"]):
        out["preemptions"] = None
    return out
