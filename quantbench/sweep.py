"""The `sweep` scenario: how much load a served cell holds before its latency breaks an SLO.

One run against the cell's server:

1. **Saturation**: `num_prompts` requests at an unbounded rate (all sent at once, or under
   `max_concurrency`): the most the server completes per second (its saturation throughput).
2. **Points**: request rates, either listed (`request_rates: [..]`) or, with `auto`, `points`
   rates placed evenly from `low_fraction` to `high_fraction` of the saturation request rate;
   and any `concurrencies` (each a closed loop at an unbounded rate). Each point runs long
   enough to be steady (`num_prompts` requests, or `duration_s` x its rate), after `warmup`
   unmeasured requests of its own at its shapes.
3. **Search** (as vLLM's `serve_sla`, by bisection): between the highest rate that met the
   SLO and the lowest that did not, `search_iterations` more rates, until they are within
   `tolerance` of each other. A point meets the SLO when its p99 TTFT and p99 TPOT (and p99
   E2EL, if given) are within `slo_ms` (`slo_criterion: p99`), or when at least
   `goodput_share` of its requests meet every limit (`goodput`); a failed request fails it.

Every prompt comes from the job's PromptSource (each point's its own, warm-ups included), so no
two share a prefix: the server's prefix cache has nothing to serve unless the workload declares
a shared prefix (`shared_prefix_tokens`, as `serving`). Workloads: exact-length random prompts
(`input_len`, `range_ratio`), or a prompts file (`prompts_file`: JSONL, one `{"prompt": ...}` or
ShareGPT-style `{"conversations": [{"value": ...}, ...]}` per line, or a JSON list of them;
the first turn is the prompt, tokenized with the model's tokenizer and cut to `input_len`
tokens, each led by two tokens of the job's PromptSource so none shares a prefix).

While each point runs, the engine's Prometheus `/metrics` is scraped every
`metrics_interval_s` (quantbench.client.scrape): the series is kept in the result file
(`metrics_series`) and each point's row carries its most running and waiting requests, highest
KV-cache usage and the preemptions during it.

Rows: one per point (vLLM's metrics, `load_row`, with `point`, `phase`, `meets_slo`, the cache
columns and the engine's figures), then one `summary` row: saturation throughput (requests/s
and output tokens/s), the highest rate under the SLO and its output throughput, the SLO stated.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from quantbench.bench import _random_lengths, _run_load, load_row
from quantbench.client.prompts import prompt_seed
from quantbench.client.scrape import MetricsPoller, summarize_samples
from quantbench.status import Status

INF = float("inf")
# With `duration_s`, a rate point still sends at least this many requests.
MIN_POINT_PROMPTS = 10
# Tokens from the job's PromptSource that lead every prompt of a prompts file.
FILE_LEAD_TOKENS = 2


def slo_text(cfg: dict) -> str:
    """The SLO as a table states it, e.g. "p99 TTFT <= 500 ms, p99 TPOT <= 50 ms"."""
    slo = cfg.get("slo_ms") or {}
    names = {"ttft": "TTFT", "tpot": "TPOT", "e2el": "E2EL"}
    limits = [f"{names[k]} <= {slo[k]:g} ms" for k in names if slo.get(k) is not None]
    if not limits:
        return "none"
    if cfg.get("slo_criterion", "p99") == "goodput":
        share = cfg.get("goodput_share", 0.99)
        return f">= {share:.0%} of requests with " + " and ".join(limits)
    return ", ".join(f"p99 {lim}" for lim in limits)


def slo_verdict(records: list, row: dict, cfg: dict) -> tuple[bool | None, float | None]:
    """(meets the SLO, margin): the margin is the worst relative excess over a limit (<= 0:
    met), as serve_sla's; for the goodput criterion, the share short of `goodput_share`."""
    slo = {k: v for k, v in (cfg.get("slo_ms") or {}).items() if v is not None}
    if not slo:
        return None, None
    if row.get("status") != Status.OK:
        return False, math.inf
    if cfg.get("slo_criterion", "p99") == "goodput":
        values = {
            "ttft": lambda r: r.ttft,
            "tpot": lambda r: r.tpot or 0.0,
            "e2el": lambda r: r.e2e,
        }
        ok = [r for r in records if r.ok]
        good = sum(all(values[k](r) * 1e3 <= v for k, v in slo.items()) for r in ok)
        share = good / len(records) if records else 0.0
        margin = cfg.get("goodput_share", 0.99) - share
        row["goodput_share"] = share
        return margin <= 0, margin
    margin = max((row[f"{k}_p99_ms"] - v) / v for k, v in slo.items())
    return bool(margin <= 0), float(margin)


def _resolve(path: str) -> Path:
    """A prompts file: relative to the working directory, else to the workflow's directory."""
    from quantbench.io import REPO_ROOT

    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


def read_prompts_file(path: str) -> list[str]:
    """The prompt texts of a JSONL (or JSON list) file: each entry's `prompt`, or its first
    ShareGPT turn (`conversations[0].value`); entries with neither are skipped."""
    text = _resolve(path).read_text()
    stripped = text.lstrip()
    entries = (
        json.loads(stripped)
        if stripped.startswith("[")
        else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    prompts = []
    for e in entries:
        if isinstance(e, str):
            prompts.append(e)
        elif isinstance(e.get("prompt"), str):
            prompts.append(e["prompt"])
        elif e.get("conversations"):
            first = e["conversations"][0]
            value = first.get("value", first.get("content"))
            if isinstance(value, str):
                prompts.append(value)
    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise ValueError(f"{path}: no prompt (a 'prompt' field or conversations[0].value)")
    return prompts


class Workload:
    """Each point's prompts: random exact-length ones (through bench._run_load, which also
    builds the shared-prefix workload), or a prompts file's, tokenized and capped."""

    def __init__(self, prompts, cfg: dict):
        self.source, self.cfg = prompts, cfg
        self.file_ids = None
        if cfg.get("prompts_file"):
            tok = prompts.tokenizer
            cap = max(cfg["input_len"] - FILE_LEAD_TOKENS, 1)
            self.file_ids = [
                list(tok.encode(t, add_special_tokens=False))[:cap]
                for t in read_prompts_file(cfg["prompts_file"])
            ]
            self.file_ids = [ids for ids in self.file_ids if ids]

    def describe(self) -> dict:
        if self.file_ids is None:
            return {"workload": "random", "input_len": self.cfg["input_len"]}
        lengths = [len(ids) + FILE_LEAD_TOKENS for ids in self.file_ids]
        return {
            "workload": f"file {self.cfg['prompts_file']}",
            "input_len": round(float(np.mean(lengths)), 1),
            "file_prompts": len(lengths),
        }

    def run(self, engine, label: str, pcfg: dict, n: int) -> tuple[list, int]:
        """The point's load: `n` measured requests after its warm-ups; (records, warm-ups)."""
        scenario = f"sweep-{label}"
        if self.file_ids is None:
            rng = np.random.default_rng(prompt_seed(pcfg["seed"], scenario))
            lengths = _random_lengths(pcfg["input_len"], pcfg.get("range_ratio", 0.0), n, rng)
            return _run_load(engine, self.source, lengths, pcfg, False, scenario)
        seed, ids = pcfg["seed"], self.file_ids

        def one(i, *key):
            lead = self.source.prompt(FILE_LEAD_TOKENS, seed, scenario, *key, i)
            return lead + ids[i % len(ids)]

        measured = [one(i) for i in range(n)]
        warm = [one(i, "warmup") for i in range(pcfg.get("warmup", 0))]
        records = engine.run_requests(
            measured,
            pcfg["output_len"],
            request_rate=pcfg.get("request_rate") or INF,
            concurrency=pcfg.get("max_concurrency"),
            seed=seed,
            burstiness=pcfg.get("burstiness", 1.0),
            warmup_prompts=warm,
        )
        return records, len(warm)


def _base_url(engine) -> str | None:
    server = getattr(engine, "server", None)
    return getattr(server, "base_url", None)


class Sweep:
    """The measured points of one sweep, in the order they ran."""

    def __init__(self, engine, prompts, cfg: dict, progress: bool):
        self.engine, self.cfg = engine, cfg
        self.workload = Workload(prompts, cfg)
        self.rows: list[dict] = []
        self.raw: list[dict] = []
        self.series: list[dict] = []
        self.warmups = 0
        self.metrics_error: str | None = None
        self.bar = tqdm(desc="sweep", unit="pt", disable=not progress, file=sys.__stderr__)

    def measure(self, phase: str, rate: float = INF, concurrency: int | None = None) -> dict:
        cfg = self.cfg
        if rate < INF and cfg.get("duration_s"):
            n = max(MIN_POINT_PROMPTS, math.ceil(rate * cfg["duration_s"]))
        else:
            n = cfg["num_prompts"]
        label = f"{len(self.rows)}-{phase}"
        pcfg = {
            **cfg,
            "request_rate": None if rate == INF else rate,
            "max_concurrency": concurrency,
            "num_prompts": n,
        }
        poller = MetricsPoller(_base_url(self.engine), cfg.get("metrics_interval_s", 0.5))
        with poller:
            records, warm = self.workload.run(self.engine, label, pcfg, n)
        self.warmups += warm
        self.metrics_error = self.metrics_error or poller.error
        row = load_row(records, pcfg, scenario="sweep", point=label, phase=phase)
        row |= self.workload.describe()
        row["request_rate"] = rate
        ok = [r for r in records if r.ok]
        if ok:
            start = min(r.send_time for r in records)
            end = max(r.token_times[-1] for r in ok)
            row |= summarize_samples(poller.samples, start, end)
        row["meets_slo"], row["slo_margin"] = slo_verdict(records, row, cfg)
        self.rows.append(row)
        self.raw += [{"point": label, **r.to_dict()} for r in records]
        self.series.append({"point": label, "samples": poller.samples, "error": poller.error})
        tqdm.write(
            f"sweep {label}: rate {rate:g} conc {concurrency} -> "
            f"{row.get('request_throughput', float('nan')):.3g} req/s, "
            f"p99 TTFT {row.get('ttft_p99_ms', float('nan')):.1f} ms, "
            f"p99 TPOT {row.get('tpot_p99_ms', float('nan')):.2f} ms, SLO {row['meets_slo']}",
            file=sys.__stderr__,
        )
        self.bar.update()
        return row


def _rate_points(cfg: dict, saturation_rate: float) -> list[float]:
    rates = cfg.get("request_rates", "auto")
    if rates == "auto":
        if not (saturation_rate > 0 and math.isfinite(saturation_rate)):
            return []
        fractions = np.linspace(cfg["low_fraction"], cfg["high_fraction"], cfg["points"])
        return [float(f * saturation_rate) for f in fractions]
    return sorted(float(r) for r in rates or [])


def search_bounds(rows: list[dict]) -> tuple[float, float | None]:
    """(highest rate that met the SLO below the lowest that failed, that lowest failing rate)
    over the measured rate points; (0, None) when nothing was measured."""
    rated = [r for r in rows if r["meets_slo"] is not None and r["phase"] != "concurrency"]
    failing = [
        r["request_rate"] if math.isfinite(r["request_rate"]) else r.get("request_throughput")
        for r in rated
        if not r["meets_slo"]
    ]
    failing = [f for f in failing if f and f > 0]
    hi = min(failing) if failing else None
    passing = [
        r["request_rate"]
        for r in rated
        if r["meets_slo"]
        and math.isfinite(r["request_rate"])
        and (hi is None or r["request_rate"] < hi)
    ]
    return (max(passing) if passing else 0.0), hi


def run_sweep(engine, prompts, cfg: dict, progress: bool = True) -> tuple[list, list, dict]:
    """The sweep scenario (module docstring): the point rows and a summary row, the raw
    records (each with its point), and the warm-ups, the metrics series and the search."""
    slo = {k: v for k, v in (cfg.get("slo_ms") or {}).items() if v is not None}
    cfg = {**cfg, "slo_ms": slo}  # a null limit is dropped (goodput reads every limit given)
    sweep = Sweep(engine, prompts, cfg, progress)
    has_slo = any(v is not None for v in (cfg.get("slo_ms") or {}).values())
    sat = sweep.measure("saturation", INF, cfg.get("max_concurrency"))
    sat_rate = sat.get("request_throughput") if sat["status"] == Status.OK else None
    for rate in _rate_points(cfg, sat_rate or 0.0):
        sweep.measure("auto" if cfg.get("request_rates", "auto") == "auto" else "listed", rate)
    for conc in cfg.get("concurrencies") or []:
        sweep.measure("concurrency", INF, conc)
    history = []
    if has_slo and not sat["meets_slo"]:
        for _ in range(cfg.get("search_iterations", 0)):
            lo, hi = search_bounds(sweep.rows)
            if hi is None or (hi - lo) <= cfg["tolerance"] * hi:
                break
            history.append({"low": lo, "high": hi})
            sweep.measure("search", (lo + hi) / 2)
    sweep.bar.close()
    rows = [*sweep.rows, summary_row(sweep.rows, cfg, sat, has_slo)]
    extra = {
        "warmup_requests": sweep.warmups,
        "metrics_series": sweep.series,
        "metrics_error": sweep.metrics_error,
        "search": history,
        "slo": slo_text(cfg),
    }
    return rows, sweep.raw, extra


def summary_row(rows: list[dict], cfg: dict, sat: dict, has_slo: bool) -> dict:
    """Saturation throughput and the highest rate (and listed concurrency) under the SLO."""
    summary = {
        "scenario": "sweep",
        "point": "summary",
        "phase": "summary",
        "status": sat["status"],
        "slo": slo_text(cfg),
        "slo_criterion": cfg.get("slo_criterion", "p99"),
        "slo_ttft_ms": (cfg.get("slo_ms") or {}).get("ttft"),
        "slo_tpot_ms": (cfg.get("slo_ms") or {}).get("tpot"),
        "output_len": cfg["output_len"],
        "points": len(rows),
        "saturation_request_throughput": sat.get("request_throughput"),
        "saturation_output_throughput": sat.get("output_throughput"),
        "saturation_ttft_p99_ms": sat.get("ttft_p99_ms"),
        "saturation_tpot_p99_ms": sat.get("tpot_p99_ms"),
        "saturation_max_running": sat.get("max_running"),
        **{k: v for k, v in sat.items() if k in ("workload", "input_len")},
    }
    summary["cached_tokens"] = sum(r.get("cached_tokens") or 0 for r in rows)
    summary["cache_hits"] = sum(r.get("cache_hits") or 0 for r in rows)
    summary["cache_unreported"] = sum(r.get("cache_unreported") or 0 for r in rows)
    if sat["status"] != Status.OK:
        summary["reason"] = f"saturation run: {sat.get('reason')}"
    if not has_slo:
        return summary
    if sat["meets_slo"]:  # even an unbounded rate meets it: capacity is saturation's
        best = sat
        summary["max_rate_under_slo"] = sat.get("request_throughput")
        summary["slo_met_at_saturation"] = True
    else:
        lo, _ = search_bounds(rows)
        best = next(
            (r for r in rows if r["meets_slo"] and r["request_rate"] == lo and lo > 0), None
        )
        summary["max_rate_under_slo"] = lo if best else None
        summary["slo_met_at_saturation"] = False
    if best is not None:
        summary["output_throughput_at_slo"] = best.get("output_throughput")
        summary["request_throughput_at_slo"] = best.get("request_throughput")
    conc = [r["max_concurrency"] for r in rows if r["phase"] == "concurrency" and r["meets_slo"]]
    summary["max_concurrency_under_slo"] = max(conc) if conc else None
    return summary
