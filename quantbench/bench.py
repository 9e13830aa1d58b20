"""Benchmark scenarios against a loaded engine. Each scenario returns rows, one per measured
request, each with its own status, so one failing cell (OOM at a long input, say) is recorded
and the others are kept."""

from __future__ import annotations

import sys
import traceback

import numpy as np
from tqdm import tqdm

from quantbench.metrics import RequestRecord, compute_metrics, qwen_speed

OK, FAILED, UNSUPPORTED = "ok", "failed", "unsupported"


def _is_oom(err: BaseException) -> bool:
    return "out of memory" in str(err).lower() or type(err).__name__ == "OutOfMemoryError"


def record_row(record: RequestRecord, output_len: int) -> dict:
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
    if record.output_tokens != output_len:
        row["status"] = FAILED
        row["reason"] = f"generated {record.output_tokens} tokens, not the {output_len} asked for"
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
        base = {
            "scenario": "single",
            "input_len": input_len,
            "output_len": out_len,
            "repeat": rep,
            "batch_size": 1,
        }
        if max_pos and input_len + out_len > max_pos:
            rows.append(
                {
                    **base,
                    "status": UNSUPPORTED,
                    "reason": f"{input_len}+{out_len} tokens exceed the model's "
                    f"max_position_embeddings {max_pos}",
                }
            )
            continue
        try:
            prompt = make_prompt_ids(tokenizer, input_len, seed=cfg.get("seed", 0) + rep)
            record, mem = engine.generate(prompt, out_len)
        except Exception as err:  # noqa: BLE001 - any failure is this cell's result
            reason = "OOM: " if _is_oom(err) else ""
            rows.append(
                {
                    **base,
                    "status": FAILED,
                    "reason": reason + f"{type(err).__name__}: {err}"[:500],
                    "traceback": traceback.format_exc(limit=5),
                }
            )
            if _is_oom(err):
                engine.memory.release()
            continue
        rows.append({**base, **record_row(record, out_len), **mem})
        raw.append({**base, "send_time": record.send_time, "token_times": record.token_times})
    return rows, raw


def failed_rows(cfg: dict, reason: str) -> list[dict]:
    """One failed row per planned input length, so the tables show each cell as failed."""
    return [
        {
            "scenario": "single",
            "input_len": n,
            "output_len": cfg["output_len"],
            "batch_size": 1,
            "status": FAILED,
            "reason": reason,
        }
        for n in sorted(cfg["input_lengths"])
    ]


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
        for key in ("speed_tok_s", "decode_speed_tok_s", "ttft_ms", "tpot_ms", "peak_mem_mb"):
            vals = np.array([r[key] for r in good], dtype=float)
            entry[key] = float(vals.mean())
            entry[key + "_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        entry["mem_method"] = good[0]["mem_method"]
        out.append(entry)
    return out
