"""The quality / speed / memory trade-off of each quantization, relative to BF16.

Every axis is a ratio or difference against the same model's BF16 cell on the same engine, so
cells measured on different GPUs can still be read together, and the Pareto flag says which
quantizations are worth considering at all (no other quantization is at least as good on every
axis and better on one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from quantbench.io import save_figure
from quantbench.status import CELL_COLUMNS, Status

KEYS = CELL_COLUMNS
FRONTIER_COLUMNS = KEYS + [
    "task",
    "quality_engine",
    "quality_delta",
    "quality_ci_low",
    "quality_ci_high",
    "verdict",
    "baseline_suspect",
    "input_len",
    "speed",
    "speed_ratio",
    "memory",
    "memory_ratio",
    "kv_cache_tokens",
    "kv_ratio",
    "pareto",
]
# With a sweep measured: the highest request rate under its SLO, and its ratio to BF16's.
CAPACITY_COLUMNS = ["capacity_under_slo", "capacity_ratio"]


def pareto_front(
    df: pd.DataFrame,
    maximize: Sequence[str] = ("quality", "speed"),
    minimize: Sequence[str] = ("memory",),
) -> pd.Series:
    """True for rows no other row dominates (at least as good on every axis, better on one).

    Rows with a missing value on any axis are neither on the front nor allowed to dominate.
    Exact ties are all on the front. Returns a boolean Series aligned with ``df.index``.
    """
    cols = [*maximize, *minimize]
    # Flip minimised axes so that "larger is better" everywhere.
    x = df[cols].to_numpy(dtype=float) * np.array([1.0] * len(maximize) + [-1.0] * len(minimize))
    valid = ~np.isnan(x).any(axis=1)
    v = x[valid]
    geq = (v[:, None, :] >= v[None, :, :]).all(axis=2)  # geq[j, i]: j at least as good as i
    gt = (v[:, None, :] > v[None, :, :]).any(axis=2)
    dominated = (geq & gt).any(axis=0)
    out = np.zeros(len(df), dtype=bool)
    out[np.flatnonzero(valid)[~dominated]] = True
    return pd.Series(out, index=df.index, name="pareto")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == Status.OK] if "status" in df.columns else df


def _ratio(values: pd.DataFrame, col: str, baseline_quant: str) -> pd.Series:
    """``col`` over the baseline quantization's ``col`` for the same model and engine."""
    base = values[values["quantization"] == baseline_quant].set_index(["model", "engine"])[col]
    idx = pd.MultiIndex.from_frame(values[["model", "engine"]])
    return pd.Series(values[col].to_numpy() / base.reindex(idx).to_numpy(), index=values.index)


def frontier_table(
    quality_delta_df: pd.DataFrame,
    speed_df: pd.DataFrame,
    memory_df: pd.DataFrame,
    kv_df: pd.DataFrame | None = None,
    *,
    capacity_df: pd.DataFrame | None = None,
    task: str | None = None,
    input_len: int | None = None,
    baseline_quant: str = "bf16",
    speed_col: str = "speed_tok_s",
    memory_col: str = "peak_mem_mb",
    kv_col: str = "kv_cache_tokens",
    capacity_col: str = "max_rate_under_slo",
) -> pd.DataFrame:
    """One row per (model, engine, quantization): quality delta vs BF16 with its CI, speed,
    memory and KV-cache capacity ratios vs BF16, and the Pareto flag.

    Inputs (long frames; rows whose ``status`` is not "ok" are dropped where the column exists):
    ``quality_delta_df`` ``gate_table`` output (model, engine, quantization, task, delta, ci_low,
    ci_high, verdict, baseline_suspect); ``task`` picks its task (required when it has several;
    ``gate_table(pool_tasks=True)`` makes "all"); ``speed_df`` model, engine, quantization,
    input_len, ``speed_col`` (repeats are averaged) at ``input_len`` (default: the smallest
    measured, where batch-1 decoding is memory-bound and weight quantization pays most);
    ``memory_df`` model, engine, quantization, ``memory_col`` (peak over rows; restricted to the
    same input_len when it has that column); ``kv_df`` model, engine, quantization, ``kv_col``;
    ``capacity_df`` model, engine, quantization, ``capacity_col`` (the sweep's highest rate
    under its SLO): where any cell has one, the columns ``CAPACITY_COLUMNS`` are added and
    capacity under the SLO (max) is one more Pareto axis.

    A cell whose engine has no quality row borrows the same checkpoint's quality from another
    engine (``quality_engine`` says which). The baseline's quality delta is 0 by definition.
    ``pareto`` is computed within each (model, engine) over quality delta (max), speed ratio (max)
    and memory ratio (min), using the axes that have data. Columns: ``FRONTIER_COLUMNS``.
    """
    q = quality_delta_df
    tasks = sorted(q["task"].dropna().unique()) if len(q) else []
    if task is None and len(tasks) > 1:
        raise ValueError(f"quality has tasks {tasks}: choose one with task=")
    task = task if task is not None else (tasks[0] if tasks else None)
    q = q[q["task"] == task]

    speed = _ok(speed_df)
    if input_len is None and len(speed):
        input_len = int(speed["input_len"].min())
    speed = speed[speed["input_len"] == input_len]
    speed = (
        speed.groupby(KEYS, as_index=False)[speed_col].mean().rename(columns={speed_col: "speed"})
    )
    speed["speed_ratio"] = _ratio(speed, "speed", baseline_quant)

    mem = _ok(memory_df)
    if "input_len" in mem.columns and input_len is not None:
        mem = mem[mem["input_len"] == input_len]
    mem = mem.groupby(KEYS, as_index=False)[memory_col].max().rename(columns={memory_col: "memory"})
    mem["memory_ratio"] = _ratio(mem, "memory", baseline_quant)

    frames = [speed, mem]
    if kv_df is not None:
        kv = _ok(kv_df).groupby(KEYS, as_index=False)[kv_col].max()
        kv = kv.rename(columns={kv_col: "kv_cache_tokens"})
        kv["kv_ratio"] = _ratio(kv, "kv_cache_tokens", baseline_quant)
        frames.append(kv)
    capacity = None
    if capacity_df is not None and len(capacity_df) and capacity_col in capacity_df:
        capacity = _ok(capacity_df).dropna(subset=[capacity_col])
        capacity = capacity.astype({capacity_col: float}).groupby(KEYS, as_index=False)
        capacity = capacity[capacity_col].max().rename(columns={capacity_col: CAPACITY_COLUMNS[0]})
        capacity["capacity_ratio"] = _ratio(capacity, CAPACITY_COLUMNS[0], baseline_quant)
        capacity = capacity if len(capacity) else None
    if capacity is not None:
        frames.append(capacity)
    cells = pd.concat([f[KEYS] for f in frames] + [q[KEYS]]).drop_duplicates()
    out = cells.sort_values(KEYS).reset_index(drop=True)
    for f in frames:
        out = out.merge(f, on=KEYS, how="left", validate="one_to_one")

    quality = q.rename(
        columns={"delta": "quality_delta", "ci_low": "quality_ci_low", "ci_high": "quality_ci_high"}
    )
    qcols = ["quality_delta", "quality_ci_low", "quality_ci_high", "verdict", "baseline_suspect"]
    quality = quality.reindex(columns=KEYS + qcols)
    quality["quality_engine"] = quality["engine"]
    same = out[KEYS].merge(quality, on=KEYS, how="left")
    # Any engine's row for the same checkpoint, the first in engine order, fills the gaps.
    other = (
        quality.sort_values("engine")
        .drop_duplicates(["model", "quantization"])
        .drop(columns="engine")
    )
    borrowed = out[KEYS].merge(other, on=["model", "quantization"], how="left")
    missing = same["quality_engine"].isna()
    same.loc[missing, qcols + ["quality_engine"]] = borrowed.loc[
        missing, qcols + ["quality_engine"]
    ]
    out = out.merge(same, on=KEYS, how="left")
    is_base = out["quantization"] == baseline_quant
    for col in ("quality_delta", "quality_ci_low", "quality_ci_high"):
        out.loc[is_base, col] = out.loc[is_base, col].fillna(0.0)
    out["task"] = task
    out["input_len"] = input_len

    out["pareto"] = False
    for _, g in out.groupby(["model", "engine"]):
        axes = {"quality_delta": "max", "speed_ratio": "max", "memory_ratio": "min"}
        if capacity is not None:
            axes["capacity_ratio"] = "max"
        used = {c: d for c, d in axes.items() if c in g and g[c].notna().any()}
        if used:
            out.loc[g.index, "pareto"] = pareto_front(
                g,
                maximize=[c for c, d in used.items() if d == "max"],
                minimize=[c for c, d in used.items() if d == "min"],
            )
    if capacity is not None:
        return out.reindex(columns=FRONTIER_COLUMNS[:-1] + CAPACITY_COLUMNS + ["pareto"])
    return out.reindex(columns=FRONTIER_COLUMNS)


def _panel(ax, g: pd.DataFrame, xcol: str, maximize_x: bool, xlabel: str) -> None:
    g = g.dropna(subset=[xcol, "quality_delta"])
    if g.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    else:
        front = pareto_front(
            g.rename(columns={xcol: "x", "quality_delta": "q"}),
            maximize=["q", "x"] if maximize_x else ["q"],
            minimize=[] if maximize_x else ["x"],
        )
        # The front of this 2-D view, so the connecting line is a real staircase in the plane.
        line = g[front].sort_values(xcol)
        ax.plot(line[xcol], line["quality_delta"], "-", color="0.6", zorder=1)
        xspan = float(np.ptp(g[xcol].dropna())) if g[xcol].notna().any() else 0.0
        yspan = (
            float(np.ptp(g["quality_delta"].dropna())) if g["quality_delta"].notna().any() else 0.0
        )
        placed: list[tuple[float, float]] = []
        for (_, r), on_front in zip(g.iterrows(), front):
            lo, hi = r["quality_ci_low"], r["quality_ci_high"]
            yerr = None
            if pd.notna(lo) and pd.notna(hi):
                yerr = [[max(r["quality_delta"] - lo, 0)], [max(hi - r["quality_delta"], 0)]]
            # A collapsed cell can sit on the front (fast and small); red keeps it from reading
            # as a recommendation.
            color = "C3" if r.get("verdict") in ("collapse", "evaluation suspect") else "C0"
            ax.errorbar(
                r[xcol],
                r["quality_delta"],
                yerr=yerr,
                fmt="o",
                ms=8,
                capsize=3,
                color=color,
                mfc=color if on_front else "white",
                zorder=2,
            )
            label = r["quantization"]
            if isinstance(r.get("verdict"), str) and r["verdict"] not in ("pass", "baseline"):
                label += f" ({r['verdict']})"
            # Points that sit close together get their labels stacked, not printed over each
            # other (format cells often land on one spot: same speed, same quality).
            near = sum(
                abs(x - r[xcol]) <= 0.04 * (xspan or 1)
                and abs(y - r["quality_delta"]) <= 0.04 * (yspan or 1)
                for x, y in placed
            )
            placed.append((r[xcol], r["quality_delta"]))
            ax.annotate(
                label,
                (r[xcol], r["quality_delta"]),
                xytext=(6, 5 - 11 * near),
                textcoords="offset points",
                fontsize=8,
            )
    ax.axhline(0, color="0.8", lw=0.8, zorder=0)
    ax.axvline(1, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("quality delta vs BF16")
    ax.grid(alpha=0.3)


def plot_frontier(table: pd.DataFrame, path_png: str | Path, path_svg: str | Path) -> None:
    """Per (model, engine) a row of two panels, quality delta (CI error bars) vs speed ratio and
    vs memory ratio, one point per quantization; filled points and the grey line are that
    panel's Pareto front, hollow points are dominated. Writes PNG and SVG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(table.groupby(["model", "engine"], sort=True)) if len(table) else []
    fig, axes = plt.subplots(
        max(1, len(groups)), 2, figsize=(11, 4.2 * max(1, len(groups))), squeeze=False
    )
    if not groups:
        for ax in axes[0]:
            ax.text(0.5, 0.5, "no cells", ha="center", va="center", transform=ax.transAxes)
    for row, ((model, engine), g) in zip(axes, groups):
        task = g["task"].iloc[0]
        length = g["input_len"].iloc[0]
        suspect = g["baseline_suspect"].eq(True).any()
        borrowed = sorted(set(g["quality_engine"].dropna()) - {engine})
        title = f"{model} · {engine} · {task}"
        title += f" (quality from {', '.join(borrowed)})" if borrowed else ""
        title += " · BF16 baseline SUSPECT" if suspect else ""
        length = (
            ""
            if length is None or (isinstance(length, float) and math.isnan(length))
            else (f" at input {int(length)}")
        )
        _panel(row[0], g, "speed_ratio", True, f"speed vs BF16{length} (higher is better)")
        _panel(row[1], g, "memory_ratio", False, "memory vs BF16 (lower is better)")
        for ax in row:
            ax.set_title(title, fontsize=10)
    fig.tight_layout()
    try:
        save_figure(fig, path_png)
        save_figure(fig, path_svg)
    finally:
        plt.close(fig)
