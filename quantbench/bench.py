"""What the benchmark scenarios (quantbench.scenarios, one module each) measure with: a batch-1
request's row, a load run (exact-length prompts streamed through the engine's server) and its
row of vLLM-defined metrics, a fixed batch's row, the cache columns and the statuses. Every
row carries its own status, so one failing cell (OOM at a long input, say) is recorded and the
others are kept."""

from __future__ import annotations

import sys
import traceback

import numpy as np
from tqdm import tqdm

from quantbench.metrics import RequestRecord, compute_metrics, qwen_speed
from quantbench.status import Status

# Tokens a warm-up request generates: enough to run prefill and decode at its shape once.
WARMUP_OUTPUT_LEN = 16


def cache_fields(records: list, allowed: int = 0) -> dict:
    """The engine's own count of prompt tokens it served from cache, over `records`; a hit is
    more cached tokens than the workload declares shared (`allowed`). Never averaged away: the
    tables show `cached_tokens` and `cache_hits` beside every figure."""
    counts = [r.cached_tokens for r in records]
    reported = [c for c in counts if c is not None]
    return {
        "cached_tokens": sum(reported) if reported else None,
        "cache_hits": sum(c > allowed for c in reported),
        "cache_unreported": len(counts) - len(reported),
    }


def _is_oom(err: BaseException) -> bool:
    return "out of memory" in str(err).lower() or type(err).__name__ == "OutOfMemoryError"


def too_long_reason(input_len: int, output_len: int, max_pos: int | None) -> str | None:
    """Why a batch-1 request of this shape cannot run on the model (None: it fits)."""
    if max_pos and input_len + output_len > max_pos:
        return (
            f"{input_len}+{output_len} tokens exceed the model's max_position_embeddings {max_pos}"
        )
    return None


def failed_request(engine, base: dict, err: BaseException) -> dict:
    """The row of a batch-1 request that raised `err`: failed, with the reason (an OOM named
    so, after the engine freed its cached blocks for the next request) and the traceback."""
    oom = _is_oom(err)
    if oom:
        engine.release()
    return {
        **base,
        "status": Status.FAILED,
        "reason": ("OOM: " if oom else "") + f"{type(err).__name__}: {err}"[:500],
        "traceback": traceback.format_exc(limit=5),
    }


def record_row(record: RequestRecord, input_len: int, output_len: int) -> dict:
    """The per-request figures, all from one timestamped measurement."""
    m = compute_metrics([record])
    seconds = record.e2e
    row = {
        "prompt_tokens": record.prompt_tokens,
        "output_tokens": record.output_tokens,
        "e2e_s": seconds,
        **qwen_speed(record.prompt_tokens, record.output_tokens, seconds),
        "ttft_ms": m.latency["ttft_mean_ms"],
        "tpot_ms": m.latency["tpot_mean_ms"],
        "itl_mean_ms": m.latency["itl_mean_ms"],
        "itl_p99_ms": m.latency["itl_p99_ms"],
        "status": Status.OK,
    }
    # Counts are the engine's own (server usage or generate()'s output): a mismatch voids the row.
    if record.output_tokens != output_len:
        row["status"] = Status.FAILED
        row["reason"] = f"generated {record.output_tokens} tokens, not the {output_len} asked for"
    elif record.prompt_tokens != input_len:
        row["status"] = Status.FAILED
        row["reason"] = f"engine counted {record.prompt_tokens} prompt tokens, not {input_len}"
    return row


def _random_lengths(mean: int, range_ratio: float, n: int, rng) -> list[int]:
    lo, hi = max(1, int(mean * (1 - range_ratio))), max(1, int(mean * (1 + range_ratio)))
    return [int(x) for x in rng.integers(lo, hi + 1, size=n)]


def _run_load(engine, prompts, lengths, cfg: dict, progress: bool, scenario: str) -> tuple:
    """Exact-length prompts (one per entry of `lengths`, each its own, from the job's
    PromptSource) streamed through the engine's server with `output_len` tokens each, after
    `warmup` unmeasured requests of their own at the load's first lengths, sent together. A
    workload that declares `shared_prefix_tokens` starts every prompt with one shared prefix.
    Returns the raw records and the number of warm-up requests."""
    seed = cfg["seed"]
    shared = min(cfg.get("shared_prefix_tokens") or 0, min(lengths))
    prefix = prompts.prompt(shared, seed, scenario, "shared-prefix") if shared else []

    def one(n, *key):
        return (
            prefix + prompts.prompt(n - shared, seed, scenario, n, *key)
            if n > shared
            else prefix[:n]
        )

    bar = tqdm(lengths, desc="prompts", disable=not progress, file=sys.__stderr__)
    measured = [one(n, i) for i, n in enumerate(bar)]
    warm = [one(n, "warmup", i) for i, n in enumerate(lengths[: cfg.get("warmup", 0)])]
    rate = cfg.get("request_rate") or float("inf")
    records = engine.run_requests(
        measured,
        cfg["output_len"],
        request_rate=rate,
        concurrency=cfg.get("max_concurrency"),
        seed=seed,
        burstiness=cfg.get("burstiness", 1.0),
        warmup_prompts=warm,
    )
    return records, len(warm)


def _workload(cfg: dict) -> dict:
    """A load run's workload, as its rows show it."""
    return {
        "request_rate": cfg.get("request_rate") or float("inf"),
        "max_concurrency": cfg.get("max_concurrency"),
        "num_prompts": cfg["num_prompts"],
        "input_len": cfg["input_len"],
        "output_len": cfg["output_len"],
        "shared_prefix_tokens": cfg.get("shared_prefix_tokens") or 0,
    }


def load_row(records: list, cfg: dict, **row) -> dict:
    """vLLM-defined metrics of a load run, as one row with its workload; `failed` or `partial`
    when requests failed or returned another number of tokens than asked for."""
    m = compute_metrics(records, slo_ms=cfg.get("slo_ms") or None)
    wrong = sum(r.output_tokens != cfg["output_len"] for r in records if r.ok)
    cache = cache_fields(records, cfg.get("shared_prefix_tokens") or 0)
    row |= {**_workload(cfg), **m.as_dict(), **cache, "status": Status.OK}
    if m.failed or wrong:
        row["status"] = Status.FAILED if m.completed == 0 else Status.PARTIAL
        row["reason"] = f"{m.failed} requests failed, {wrong} with a wrong output length"
    return row


def scenario_status(rows: list[dict]) -> str:
    """A scenario file's status from its rows: ok, failed, or partial."""
    statuses = {r["status"] for r in rows}
    if statuses == {Status.OK}:
        return Status.OK
    return Status.FAILED if Status.OK not in statuses else Status.PARTIAL


def batch_row(records: list, base: dict, memory: dict) -> dict:
    """One fixed batch's row from its records (`base`: batch_size, input_len, output_len)."""
    b, out_len = base["batch_size"], base["output_len"]
    bad = [r for r in records if not r.ok or r.output_tokens != out_len]
    if bad:
        reason = bad[0].error or f"{len(bad)} requests with a wrong output length"
        return {**base, "status": Status.FAILED, "reason": reason, **cache_fields(records)}
    send = min(r.send_time for r in records)
    prefill = max(r.token_times[0] for r in records) - send
    latency = max(r.token_times[-1] for r in records) - send
    itl = [g for r in records for g in r.itls]
    return {
        **base,
        "status": Status.OK,
        "latency_s": latency,
        "prefill_s": prefill,
        "input_throughput_tok_s": b * base["input_len"] / prefill,
        # None when every token after the first came in one read (a tiny model's fast decode)
        "output_throughput_tok_s": b * out_len / (latency - prefill) if latency > prefill else None,
        "itl_ms": float(np.median(itl)) * 1000 if itl else float("nan"),
        **memory,
        **cache_fields(records),
    }
