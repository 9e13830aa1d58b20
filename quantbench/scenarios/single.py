"""Batch 1 at each input length, `repeats` times, exactly `output_len` tokens: the speed table
(the layout of Qwen3's published speed tables) and the speed-against-input plot."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from quantbench.bench import (
    WARMUP_OUTPUT_LEN,
    _is_oom,
    cache_fields,
    failed_request,
    record_row,
    too_long_reason,
)
from quantbench.io import save_figure
from quantbench.scenarios import (
    POSITIVE_INT,
    Plot,
    Scenario,
    Table,
    input_lengths_setting,
    register_scenario,
)
from quantbench.status import Status
from quantbench.summary import summarize_lengths
from quantbench.tables import (
    CELL_KEYS,
    cache_cell,
    cache_hits,
    mean_with_spread,
    status_or,
    weights_mark,
)

SPEED_COLUMNS = [
    "engine",
    "model",
    "input_len",
    "quantization",
    "speed_tok_s",
    "decode_tok_s",
    "memory_mb",
    "memory_method",
    "memory_weights",
    "repeats",
    "cached_tokens",
]


def speed_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Rows model x input length x quantization per engine; speed (mean ± std over repeats) and
    peak memory. A cell with no successful repeat shows its status and reason instead."""
    single = cells[cells["scenario"] == "single"] if "scenario" in cells else cells.iloc[:0]
    out = []
    for key, group in single.groupby(CELL_KEYS + ["input_len"], sort=True):
        ok = group[group["status"] == Status.OK]
        row = dict(zip(CELL_KEYS + ["input_len"], key))
        if ok.empty:
            row["speed_tok_s"] = status_or(group.iloc[0], "")
            row["memory_mb"] = ""
        else:
            (summary,) = summarize_lengths(group.to_dict("records"))
            speed = summary.spread("speed_tok_s")
            row["speed_tok_s"] = mean_with_spread(speed.mean, speed.std, summary.n_ok)
            row["decode_tok_s"] = f"{summary.spread('decode_speed_tok_s').mean:.2f}"
            row["memory_mb"] = f"{summary.peak_mem_mb_max:.2f}"
            row["memory_method"] = summary.mem_method
            row["memory_weights"] = weights_mark(ok.get("weights_load_path"))
            row["repeats"] = summary.n_ok
            if cache_hits(ok):
                row["speed_tok_s"] += " (cache hit)"
            # A job stopped before its result file: its logged requests (results.read_result)
            stopped = int((group["status"] == Status.NOT_RUN).sum())
            if stopped or group.get("recovered_from", pd.Series(dtype=object)).notna().any():
                n = f"{summary.n_ok} of {summary.n_ok + stopped}"
                row["speed_tok_s"] += f" (job stopped: {n}, read from its log)"
        row["cached_tokens"] = cache_cell(group)
        out.append(row)
    # object first: a column no row filled is all-NaN float64, which pandas 4 will not fill with "".
    return pd.DataFrame(out).reindex(columns=SPEED_COLUMNS).astype(object).fillna("")


def plot_speed(cells: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = cells[(cells["scenario"] == "single") & (cells["status"] == Status.OK)]
    groups = list(ok.groupby(["engine", "model"]))
    fig, axes = plt.subplots(
        1, max(1, len(groups)), figsize=(6 * max(1, len(groups)), 4), squeeze=False
    )
    for ax, ((engine, model), g) in zip(axes[0], groups):
        for quant, q in g.groupby("quantization"):
            stats = q.groupby("input_len")["speed_tok_s"].agg(["mean", "std"]).reset_index()
            ax.errorbar(
                stats["input_len"],
                stats["mean"],
                yerr=stats["std"].fillna(0),
                marker="o",
                capsize=3,
                label=quant,
            )
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("input length (tokens)")
        ax.set_ylabel("speed (prompt + generated) / s")
        ax.set_title(f"{model} · {engine}")
        ax.legend(title="quantization")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)


def summarize_rows(rows: list[dict]) -> list[dict]:
    """Mean and spread per input length over the repeats that succeeded (quantbench.summary)."""
    return [s.as_dict() for s in summarize_lengths(rows)]


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
        fits = too_long_reason(input_len, out_len, max_pos) is None
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
    reason = too_long_reason(input_len, out_len, max_pos)
    if reason:
        return {**base, "status": Status.UNSUPPORTED, "reason": reason}, None
    try:
        prompt = prompts.prompt(input_len, cfg.get("seed", 0), "single", input_len, rep)
        record, mem = engine.generate(prompt, out_len)
    except Exception as err:  # noqa: BLE001 - any failure is this cell's result
        return failed_request(engine, base, err), None
    cache = cache_fields([record])
    row = {**base, **record_row(record, input_len, out_len), **mem}
    row |= {"cached_tokens": cache["cached_tokens"], "cache_hit": bool(cache["cache_hits"])}
    return row, {**base, **asdict(record)}


LOG_PREFIX = "single "  # a logged row's line: the prefix, then the row as JSON


def _log_row(row: dict) -> None:
    """One line per request in the job's log, as it finishes: a job cut before its result file
    is written (a time limit, scancel, a machine taken back) still shows which requests
    finished and what they measured, and the report reads them back (logged_rows)."""
    shown = {k: v for k, v in row.items() if k != "traceback"}
    line = LOG_PREFIX + json.dumps(shown, default=str)
    tqdm.write(line, file=sys.__stderr__)  # the terminal, beside the progress bar
    if sys.stderr is not sys.__stderr__:  # and the job's log (jobs.logged redirects stderr)
        print(line, file=sys.stderr, flush=True)


def logged_rows(text: str) -> list[dict]:
    """The rows a job's log holds (_log_row), in order. A progress bar redrawn with a carriage
    return may share a row's line; a line cut mid-row is left out."""
    decoder, marker = json.JSONDecoder(), LOG_PREFIX + '{"scenario": "single"'
    rows, at = [], text.find(marker)
    while at >= 0:
        try:
            row, end = decoder.raw_decode(text, at + len(LOG_PREFIX))
            rows.append(row)
        except ValueError:  # the job stopped while writing this line
            end = at + len(marker)
        at = text.find(marker, end)
    return rows


@register_scenario("single")
class Single(Scenario):
    settings = {
        "input_lengths": input_lengths_setting([1, 6144, 14336, 30720, 63488, 129024]),
        "output_len": {**POSITIVE_INT, "default": 2048},
        "repeats": {**POSITIVE_INT, "default": 3},
        "warmup": {"type": "integer", "minimum": 0, "default": 1},
        "warmup_per_shape": {
            "type": "boolean",
            "default": True,
            "description": "one unmeasured request at each input length first",
        },
        "seed": {"type": "integer", "default": 0},
    }
    tables = (
        Table(
            "speed",
            "Speed (tokens/s) and peak memory (MB), batch 1",
            "Batch-1 speed, laid out like the published Qwen3 speed tables: speed = (prompt "
            "tokens + generated tokens) / time, mean ± standard deviation over repeats; "
            "`decode_tok_s` = generated tokens / time (Qwen's Transformers script). Peak memory "
            "with the method that measured it.",
            build=speed_table,
            headline=True,
        ),
    )
    plots = (
        Plot(
            "speed_vs_input.png",
            "Speed against input length (mean ± sd over repeats)",
            "Speed against input length, one line per quantization (error bars: standard "
            "deviation over repeats).",
            plot_speed,
        ),
    )

    def run(self, engine, prompts, settings, progress=True):
        return run_single(engine, prompts, settings, progress)

    def failed_rows(self, settings, status, reason):
        base = {"scenario": self.name, "status": status, "reason": reason}
        return [
            {**base, "input_len": n, "output_len": settings["output_len"], "batch_size": 1}
            for n in sorted(settings["input_lengths"])
        ]

    def summarize(self, rows):
        return summarize_rows(rows)
