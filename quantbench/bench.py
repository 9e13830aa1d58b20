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

from quantbench.metrics import RequestRecord, compute_metrics, qwen_speed

OK, FAILED, UNSUPPORTED, SKIPPED = "ok", "failed", "unsupported", "skipped"


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
        "status": OK,
    }
    # Counts are the engine's own (server usage or generate()'s output): a mismatch voids the row.
    if record.output_tokens != output_len:
        row["status"] = FAILED
        row["reason"] = f"generated {record.output_tokens} tokens, not the {output_len} asked for"
    elif record.prompt_tokens != input_len:
        row["status"] = FAILED
        row["reason"] = f"engine counted {record.prompt_tokens} prompt tokens, not {input_len}"
    return row


def run_single(engine, tokenizer, cfg: dict, progress: bool = True) -> tuple[list[dict], list]:
    """Batch 1 at each input length (ascending), `repeats` times, exactly `output_len` tokens.

    Returns the rows and the raw per-request records (timestamps) for re-analysis.
    """
    from quantbench.client.prompts import make_prompt_ids

    lengths = sorted(cfg["input_lengths"])
    out_len = cfg["output_len"]
    max_pos = getattr(engine, "max_positions", None)
    for i in range(cfg.get("warmup", 0)):  # compile kernels, fill caches; not recorded
        engine.generate(make_prompt_ids(tokenizer, min(lengths), seed=10_000 + i), min(8, out_len))
    rows, raw = [], []
    cells = [(n, r) for n in lengths for r in range(cfg["repeats"])]
    for input_len, rep in tqdm(
        cells, desc="single", unit="req", disable=not progress, file=sys.__stderr__, mininterval=1.0
    ):
        row, timestamps = _single_request(engine, tokenizer, cfg, input_len, rep, max_pos)
        rows.append(row)
        if timestamps is not None:
            raw.append(timestamps)
        _log_row(row)
    return rows, raw


def _single_request(engine, tokenizer, cfg, input_len, rep, max_pos):
    """One batch-1 request: its row, and where it ran, its raw record (every timestamp, for
    re-analysis)."""
    from quantbench.client.prompts import make_prompt_ids

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
        return {**base, "status": UNSUPPORTED, "reason": reason}, None
    try:
        prompt = make_prompt_ids(tokenizer, input_len, seed=cfg.get("seed", 0) + rep)
        record, mem = engine.generate(prompt, out_len)
    except Exception as err:  # noqa: BLE001 - any failure is this cell's result
        oom = _is_oom(err)
        if oom:
            engine.release()
        row = {
            **base,
            "status": FAILED,
            "reason": ("OOM: " if oom else "") + f"{type(err).__name__}: {err}"[:500],
            "traceback": traceback.format_exc(limit=5),
        }
        return row, None
    return {**base, **record_row(record, input_len, out_len), **mem}, {**base, **asdict(record)}


def _log_row(row: dict) -> None:
    """One line per request in the job's log, as it finishes: a job cut before its result file
    is written (a time limit, scancel) still shows which requests finished and what they
    measured."""
    shown = {k: v for k, v in row.items() if k != "traceback"}
    tqdm.write("single " + json.dumps(shown, default=str), file=sys.__stderr__)


def _random_lengths(mean: int, range_ratio: float, n: int, rng) -> list[int]:
    lo, hi = max(1, int(mean * (1 - range_ratio))), max(1, int(mean * (1 + range_ratio)))
    return [int(x) for x in rng.integers(lo, hi + 1, size=n)]


def _run_load(engine, tokenizer, lengths, cfg: dict, progress: bool, **load) -> list:
    """Exact-length prompts (one per entry of `lengths`, seeded from cfg["seed"]) streamed
    through the engine's server with `output_len` tokens each; the raw records."""
    from quantbench.client.prompts import make_prompt_ids

    bar = tqdm(lengths, desc="prompts", disable=not progress, file=sys.__stderr__)
    prompts = [make_prompt_ids(tokenizer, n, seed=cfg["seed"] + i) for i, n in enumerate(bar)]
    rate = cfg.get("request_rate") or float("inf")
    return engine.run_requests(
        prompts,
        cfg["output_len"],
        request_rate=rate,
        concurrency=cfg.get("max_concurrency"),
        seed=cfg["seed"],
        **load,
    )


def _workload(cfg: dict) -> dict:
    """A load run's workload, as its rows show it."""
    return {
        "request_rate": cfg.get("request_rate") or float("inf"),
        "max_concurrency": cfg.get("max_concurrency"),
        "num_prompts": cfg["num_prompts"],
        "input_len": cfg["input_len"],
        "output_len": cfg["output_len"],
    }


def load_row(records: list, cfg: dict, **row) -> dict:
    """vLLM-defined metrics of a load run, as one row with its workload; `failed` or `partial`
    when requests failed or returned another number of tokens than asked for."""
    m = compute_metrics(records, slo_ms=cfg.get("slo_ms") or None)
    wrong = sum(r.output_tokens != cfg["output_len"] for r in records if r.ok)
    row |= {**_workload(cfg), **m.as_dict(), "status": OK}
    if m.failed or wrong:
        row["status"] = FAILED if m.completed == 0 else "partial"
        row["reason"] = f"{m.failed} requests failed, {wrong} with a wrong output length"
    return row


def run_serving(engine, tokenizer, cfg: dict, progress: bool = True) -> tuple[list[dict], list]:
    """Online serving: `num_prompts` requests at a (Poisson/gamma) request rate and/or a
    concurrency limit; one summary row of vLLM-defined metrics, plus the raw records."""
    rng = np.random.default_rng(cfg["seed"])
    lengths = _random_lengths(cfg["input_len"], cfg["range_ratio"], cfg["num_prompts"], rng)
    load = {"burstiness": cfg["burstiness"], "warmup": cfg["warmup"]}
    records = _run_load(engine, tokenizer, lengths, cfg, progress, **load)
    return [load_row(records, cfg, scenario="serving")], [r.to_dict() for r in records]


def scenario_status(rows: list[dict]) -> str:
    """A scenario file's status from its rows: ok, failed, or partial."""
    statuses = {r["status"] for r in rows}
    return OK if statuses == {OK} else (FAILED if OK not in statuses else "partial")


def batch_row(records: list, base: dict, memory: dict) -> dict:
    """One fixed batch's row from its records (`base`: batch_size, input_len, output_len)."""
    b, out_len = base["batch_size"], base["output_len"]
    bad = [r for r in records if not r.ok or r.output_tokens != out_len]
    if bad:
        reason = bad[0].error or f"{len(bad)} requests with a wrong output length"
        return {**base, "status": FAILED, "reason": reason}
    send = min(r.send_time for r in records)
    prefill = max(r.token_times[0] for r in records) - send
    latency = max(r.token_times[-1] for r in records) - send
    itl = [g for r in records for g in r.itls]
    return {
        **base,
        "status": OK,
        "latency_s": latency,
        "prefill_s": prefill,
        "input_throughput_tok_s": b * base["input_len"] / prefill,
        "output_throughput_tok_s": b * out_len / (latency - prefill),
        "itl_ms": float(np.median(itl)) * 1000 if itl else float("nan"),
        **memory,
    }


def run_batch(engine, tokenizer, cfg: dict, progress: bool = True) -> tuple[list[dict], list]:
    """Fixed batches: B requests of `input_len` sent together. As in SGLang's one-batch report:
    latency = last token of the batch; prefill = last first token; input throughput =
    B x input_len / prefill; output throughput = B x output_len / (latency - prefill);
    ITL = median gap between tokens."""
    from quantbench.client.prompts import make_prompt_ids

    rows, raw = [], []
    for b in tqdm(cfg["batch_sizes"], desc="batch", disable=not progress, file=sys.__stderr__):
        prompts = [
            make_prompt_ids(tokenizer, cfg["input_len"], seed=cfg["seed"] + i) for i in range(b)
        ]
        base = {
            "scenario": "batch",
            "batch_size": b,
            "input_len": cfg["input_len"],
            "output_len": cfg["output_len"],
        }
        records = engine.run_requests(prompts, cfg["output_len"], concurrency=b)
        raw += [{**base, **r.to_dict()} for r in records]
        rows.append(batch_row(records, base, engine.measure_memory()))
    return rows, raw


def run_engine_client(engine, tokenizer, cfg: dict, progress: bool = True) -> tuple[list, list]:
    """The project's client, then the engine's own benchmark tool, on the same server with the
    same fixed-length workload: one row per client, under the same metric names."""
    from quantbench.engines.own_client import TOOLS, Workload

    w = Workload.from_config(cfg)
    cfg = asdict(w)  # the schema's defaults are the Workload's
    records = _run_load(engine, tokenizer, [w.input_len] * w.num_prompts, cfg, progress, warmup=1)
    ours = load_row(records, cfg, scenario="engine_client", client="quantbench")
    base = {"scenario": "engine_client", **_workload(cfg)}
    try:
        theirs = {**base, **engine.own_client(w), "status": OK}
    except Exception as err:  # noqa: BLE001 - the other client's failure is its row's result
        tool = TOOLS[engine.name].name
        theirs = {**base, "client": tool, "status": FAILED, "reason": str(err)[:1500]}
    return [ours, theirs], [r.to_dict() for r in records]


SCENARIO_RUNNERS = {
    "single": run_single,
    "serving": run_serving,
    "batch": run_batch,
    "engine_client": run_engine_client,
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
    """Mean and spread per input length over the repeats that succeeded."""
    out = []
    for input_len in sorted({r["input_len"] for r in rows}):
        group = [r for r in rows if r["input_len"] == input_len]
        good = [r for r in group if r["status"] == OK]
        entry = {"input_len": input_len, "n_ok": len(good), "n": len(group)}
        if not good:
            entry["status"] = group[0]["status"]
            entry["reason"] = group[0].get("reason")
            out.append(entry)
            continue
        entry["status"] = OK
        keys = ["speed_tok_s", "decode_speed_tok_s", "ttft_ms", "tpot_ms", "peak_mem_mb"]
        # Figures only some engines record (Transformers on CUDA marks prefill's end and the
        # last token).
        keys += [k for k in ("decode_peak_mem_mb", "end_mem_mb") if all(k in r for r in good)]
        for key in keys:
            vals = np.array([r[key] for r in good], dtype=float)
            entry[key] = float(vals.mean())
            entry[key + "_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        entry["mem_method"] = good[0]["mem_method"]
        out.append(entry)
    return out
