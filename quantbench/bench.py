"""Benchmark scenarios against a loaded engine. Each scenario returns rows, one per measured
request, each with its own status, so one failing cell (OOM at a long input, say) is recorded
and the others are kept."""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import asdict

import numpy as np
from tqdm import tqdm

from quantbench import gpu
from quantbench.metrics import RequestRecord, compute_metrics, qwen_speed
from quantbench.status import Status
from quantbench.summary import summarize_lengths

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


def run_single(engine, prompts, cfg: dict, progress: bool = True) -> tuple[list, list, dict]:
    """Batch 1 at each input length (ascending), `repeats` times, exactly `output_len` tokens,
    each length after one unmeasured request of its own shape (`warmup_per_shape`).

    `prompts` is the job's PromptSource: every request, warm-up included, has its own prompt
    and none begins another. Returns the rows, the raw per-request records (timestamps) for
    re-analysis, and what ran besides (warm-up requests).
    """
    lengths = sorted(cfg["input_lengths"])
    out_len = cfg["output_len"]
    seed = cfg.get("seed", 0)
    max_pos = engine.max_positions
    warmups = 0
    for i in range(cfg.get("warmup", 0)):  # load kernels once; not recorded
        engine.generate(prompts.prompt(min(lengths), seed, "single-warmup", i), min(8, out_len))
        warmups += 1
    rows, raw = [], []
    bar = tqdm(
        total=len(lengths) * cfg["repeats"],
        desc="single",
        unit="req",
        disable=not progress,
        file=sys.__stderr__,
        mininterval=1.0,
    )
    for input_len in lengths:
        fits = not (max_pos and input_len + out_len > max_pos)
        if cfg.get("warmup_per_shape", True) and fits:
            try:  # this length's kernels and shapes, once, before its measured repeats
                ids = prompts.prompt(input_len, seed, "single-warmup-shape", input_len)
                engine.generate(ids, min(WARMUP_OUTPUT_LEN, out_len))
                warmups += 1
            except Exception as err:  # noqa: BLE001 - the measured requests record the failure
                tqdm.write(f"single warm-up at {input_len} failed: {err}", file=sys.__stderr__)
                if _is_oom(err):
                    engine.release()
        for rep in range(cfg["repeats"]):
            row, timestamps = _single_request(engine, prompts, cfg, input_len, rep, max_pos)
            rows.append(row)
            if timestamps is not None:
                raw.append(timestamps)
            _log_row(row)
            bar.update()
    bar.close()
    return rows, raw, {"warmup_requests": warmups}


def _single_request(engine, prompts, cfg, input_len, rep, max_pos):
    """One batch-1 request: its row, and where it ran, its raw record (every timestamp, for
    re-analysis)."""
    out_len = cfg["output_len"]
    base = {
        "scenario": "single",
        "input_len": input_len,
        "output_len": out_len,
        "repeat": rep,
        "batch_size": 1,
    }
    if max_pos and input_len + out_len > max_pos:
        reason = (
            f"{input_len}+{out_len} tokens exceed the model's max_position_embeddings {max_pos}"
        )
        return {**base, "status": Status.UNSUPPORTED, "reason": reason}, None
    try:
        prompt = prompts.prompt(input_len, cfg.get("seed", 0), "single", input_len, rep)
        record, mem = engine.generate(prompt, out_len)
    except Exception as err:  # noqa: BLE001 - any failure is this cell's result
        oom = _is_oom(err)
        if oom:
            engine.release()
        row = {
            **base,
            "status": Status.FAILED,
            "reason": ("OOM: " if oom else "") + f"{type(err).__name__}: {err}"[:500],
            "traceback": traceback.format_exc(limit=5),
        }
        return row, None
    cache = cache_fields([record])
    row = {**base, **record_row(record, input_len, out_len), **mem}
    row |= {"cached_tokens": cache["cached_tokens"], "cache_hit": bool(cache["cache_hits"])}
    return row, {**base, **asdict(record)}


def _log_row(row: dict) -> None:
    """One line per request in the job's log, as it finishes: a job cut before its result file
    is written (a time limit, scancel) still shows which requests finished and what they
    measured."""
    shown = {k: v for k, v in row.items() if k != "traceback"}
    tqdm.write("single " + json.dumps(shown, default=str), file=sys.__stderr__)


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


def run_serving(engine, prompts, cfg: dict, progress: bool = True) -> tuple[list, list, dict]:
    """Online serving: `num_prompts` requests at a (Poisson/gamma) request rate and/or a
    concurrency limit; one summary row of vLLM-defined metrics, plus the raw records."""
    rng = np.random.default_rng(cfg["seed"])
    lengths = _random_lengths(cfg["input_len"], cfg["range_ratio"], cfg["num_prompts"], rng)
    records, warmups = _run_load(engine, prompts, lengths, cfg, progress, "serving")
    rows = [load_row(records, cfg, scenario="serving")]
    return rows, [r.to_dict() for r in records], {"warmup_requests": warmups}


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


def run_batch(engine, prompts, cfg: dict, progress: bool = True) -> tuple[list, list, dict]:
    """Fixed batches: B requests of `input_len` sent together. As in SGLang's one-batch report:
    latency = last token of the batch; prefill = last first token; input throughput =
    B x input_len / prefill; output throughput = B x output_len / (latency - prefill);
    ITL = median gap between tokens. Each batch size runs once unmeasured first (its own
    prompts, `WARMUP_OUTPUT_LEN` tokens); the GPU energy counter is read around each batch."""
    rows, raw, warmups = [], [], 0
    n, out_len, seed = cfg["input_len"], cfg["output_len"], cfg["seed"]
    for b in tqdm(cfg["batch_sizes"], desc="batch", disable=not progress, file=sys.__stderr__):
        if cfg.get("warmup_per_shape", True):
            warm = [prompts.prompt(n, seed, "batch-warmup", b, i) for i in range(b)]
            engine.run_requests(warm, min(WARMUP_OUTPUT_LEN, out_len), concurrency=b)
            warmups += b
        batch = [prompts.prompt(n, seed, "batch", b, i) for i in range(b)]
        base = {"scenario": "batch", "batch_size": b, "input_len": n, "output_len": out_len}
        energy_start = gpu.energy_j()
        records = engine.run_requests(batch, out_len, concurrency=b)
        energy = _energy(energy_start, b * out_len)
        raw += [{**base, **r.to_dict()} for r in records]
        rows.append(
            {**batch_row(records, base, engine.measure_memory(b * (n + out_len))), **energy}
        )
    return rows, raw, {"warmup_requests": warmups}


def _energy(start_j: float | None, output_tokens: int) -> dict:
    """Joules since `start_j` on the GPUs' counter, and per output token; empty without one."""
    joules = gpu.joules_since(start_j)
    if joules is None:
        return {}
    return {"energy_j": joules, "energy_j_per_output_token": joules / max(output_tokens, 1)}


def run_engine_client(engine, prompts, cfg: dict, progress: bool = True) -> tuple:
    """The project's client, then the engine's own benchmark tool, on the same server with the
    same fixed-length workload: one row per client, under the same metric names. Our prompts
    are the run's own (no prefix of any other); the tool draws its own random ones."""
    from quantbench.engines.own_client import Workload

    w = Workload.from_config(cfg)
    cfg = {**asdict(w), "warmup": 1}  # the schema's defaults are the Workload's
    lengths = [w.input_len] * w.num_prompts
    records, warmups = _run_load(engine, prompts, lengths, cfg, progress, "engine_client")
    ours = load_row(records, cfg, scenario="engine_client", client="quantbench")
    base = {"scenario": "engine_client", **_workload(cfg)}
    try:
        theirs = {**base, **engine.own_client(w), "status": Status.OK}
    except Exception as err:  # noqa: BLE001 - the other client's failure is its row's result
        tool = engine.own_client_tool.name
        theirs = {**base, "client": tool, "status": Status.FAILED, "reason": str(err)[:1500]}
    return [ours, theirs], [r.to_dict() for r in records], {"warmup_requests": warmups}


def run_sweep(engine, prompts, cfg: dict, progress: bool = True) -> tuple:
    """Rate / concurrency sweep to saturation and the highest rate under an SLO
    (quantbench.sweep)."""
    from quantbench.sweep import run_sweep as sweep

    return sweep(engine, prompts, cfg, progress)


SCENARIO_RUNNERS = {
    "single": run_single,
    "serving": run_serving,
    "batch": run_batch,
    "engine_client": run_engine_client,
    "sweep": run_sweep,
}


def failed_rows(scenario: str, cfg: dict, status: str, reason: str) -> list[dict]:
    """One row per planned measurement, so the tables show each cell with its status."""
    base = {"scenario": scenario, "status": status, "reason": reason}
    if scenario == "single":
        return [
            {**base, "input_len": n, "output_len": cfg["output_len"], "batch_size": 1}
            for n in sorted(cfg["input_lengths"])
        ]
    if scenario == "batch":
        return [
            {**base, "batch_size": b, "input_len": cfg["input_len"]} for b in cfg["batch_sizes"]
        ]
    return [{**base, "input_len": cfg["input_len"]}]


def summarize_rows(rows: list[dict]) -> list[dict]:
    """Mean and spread per input length over the repeats that succeeded (quantbench.summary)."""
    return [s.as_dict() for s in summarize_lengths(rows)]
