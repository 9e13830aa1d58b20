"""The quality part of the report, from the evaluation result files: the quality table with each
cell's flags, the gate (paired per-sample comparison with the same model's BF16 cell, plus the
published-BF16 check) and the quality / speed / memory frontier (table and plot).

One entry, ``build_quality_report``, called by ``quantbench.report.build_report``; it reads the
evaluation files itself (``load_quality``) and imports nothing of quantbench.report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from quantbench.quality.baseline import published_baselines, published_quality
from quantbench.quality.frontier import frontier_table, plot_frontier
from quantbench.quality.gate import gate_table, read_samples, sample_scores
from quantbench.report_html import FlagCodes, table_html
from quantbench.results import read_result
from quantbench.status import CellKey, Status
from quantbench.tables import CELL_KEYS, cell_of, write_table

KEYS = CELL_KEYS
DEFAULTS = {
    "tolerance": 0.02,
    "alpha": 0.05,
    "frontier_input_len": None,
    "frontier_task": None,
    "published": {},
}


def _cell(doc: dict) -> CellKey:
    return CellKey.of(doc["provenance"])


def load_quality(paths: list[str]) -> pd.DataFrame:
    rows = []
    for path in paths:
        doc = read_result(path)
        base = {**cell_of(doc["provenance"]), "status": doc["status"], "reason": doc.get("reason")}
        rows += [{**base, **s} for s in doc.get("scores", [])] or [base]
    return pd.DataFrame(rows)


def quality_table(quality: pd.DataFrame) -> pd.DataFrame:
    if quality.empty or "value" not in quality:
        return quality
    q = quality.copy()
    q["score"] = [
        f"{v:.4f} ± {s:.4f}"
        if pd.notna(v) and pd.notna(s)
        else (f"{v:.4f}" if pd.notna(v) else f"{st}: {r}")
        for v, s, st, r in zip(q["value"], q.get("stderr"), q["status"], q["reason"])
    ]
    return q[CELL_KEYS + ["task", "metric", "filter", "n", "score", "status"]].fillna("")


def write_flagged_table(df: pd.DataFrame, stem: Path, title: str) -> None:
    """A table whose rows carry flags: a flag's full text repeats on every row it applies to,
    so the HTML shows short codes with a legend below."""
    html = None
    if "flags" in df.columns and len(df):
        codes = FlagCodes()
        html = table_html(df, codes) + codes.legend()
    write_table(df, stem, title, html)


def baseline_quant(cfg: Mapping) -> str:
    """The configured quantization that is BF16 (method bf16), the gate's baseline."""
    for name, spec in (cfg.get("quantizations") or {}).items():
        if spec.get("method") == "bf16":
            return name
    return "bf16"


def cell_scores(rows: list[dict]) -> tuple[dict[str, dict], list[str]]:
    """Per-task per-sample scores of one cell, and notes for tasks that cannot be paired. A task
    logged under several filters is scored on the first (lm-eval logs them in filter_list
    order, the same for every cell)."""
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    scores, notes = {}, []
    for task, task_rows in by_task.items():
        try:
            scores.update(sample_scores(task_rows, filter_key=task_rows[0].get("filter")))
        except ValueError as err:  # corpus-level metrics (bleu) have no per-sample score
            notes.append(f"{task}: not paired ({err})")
    return scores, notes


def published_for(cfg: Mapping, tasks: set[str]) -> tuple[dict, list[str]]:
    """(model, task) -> published BF16 score, from ``evaluation.published`` first, else from the
    shipped published tables by the model's ``reference_name`` (or hf ``id``)."""
    out: dict[tuple[str, str], object] = {}
    for model, entries in (cfg["evaluation"].get("published") or {}).items():
        out.update({(model, task): v for task, v in entries.items()})
    notes: list[str] = []
    wanted = {
        name: [spec[k] for k in ("reference_name", "id") if spec.get(k)]
        for name, spec in (cfg.get("models") or {}).items()
        if spec.get("source") != "dummy"  # random weights: no quality to check
    }
    if not any(wanted.values()):
        return out, notes
    try:
        pub = published_quality()
    except (OSError, ValueError) as err:
        return out, [f"published tables unreadable: {err}"]
    pub = pub[pub["task"].isin(tasks)]
    ids = set(pub["model"])
    for name, candidates in wanted.items():
        # "Qwen3-8B" (the speed tables' name) matches the published checkpoint "Qwen/Qwen3-8B".
        match = sorted(i for i in ids for c in candidates if i == c or i.endswith("/" + c))
        if not match:
            continue
        try:
            found = published_baselines(pub, {name: match[0]})
        except ValueError as err:
            notes.append(f"{name}: {err}")
            continue
        out.update({k: v for k, v in found.items() if k not in out})
    return out, notes


def _joined(flags) -> str:
    return "; ".join(flags or [])


def _display(df: pd.DataFrame) -> pd.DataFrame:
    """Four significant digits, and blanks rather than "nan" for what does not apply."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda v: float(f"{v:.4g}") if math.isfinite(v) else v)
    return out.astype(object).where(out.notna(), "")


def _speed_frame(cells: pd.DataFrame) -> pd.DataFrame:
    cols = [*KEYS, "input_len", "status", "speed_tok_s", "peak_mem_mb"]
    if cells is None or cells.empty or "scenario" not in cells:
        return pd.DataFrame(columns=cols)
    single = cells[cells["scenario"] == "single"].reindex(columns=cols)
    return single.astype({"speed_tok_s": float, "peak_mem_mb": float})


def _keyed(df: pd.DataFrame) -> pd.DataFrame:
    # An empty frame's key columns come out float; merging them with text keys fails.
    return df.astype({k: object for k in KEYS if k in df.columns})


def build_quality_report(
    quality_paths: list[str],
    samples_paths: list[str],
    cells_df: pd.DataFrame,
    engine_df: pd.DataFrame,
    cfg: Mapping,
    out_dir: str | Path,
) -> dict:
    """Write quality.*, gate.* and frontier.* (md, csv, html) and frontier.png/.svg into
    ``out_dir``.

    Inputs: the evaluations' quality.json and samples.jsonl paths (a samples file is matched to
    the quality.json in its directory); ``cells_df`` every measured request (report's requests.csv:
    scenario, input_len, status, speed_tok_s, peak_mem_mb); ``engine_df`` engine facts per cell
    (status, kv_cache_tokens); ``cfg`` the workflow config (``evaluation``, ``models``,
    ``quantizations``). Returns counts and notes.
    """
    out = Path(out_dir)
    cfg = {**cfg, "evaluation": {**DEFAULTS, **(cfg.get("evaluation") or {})}}
    ev = cfg["evaluation"]
    base = baseline_quant(cfg)
    docs = {str(Path(p).parent): read_result(p) for p in quality_paths}
    flags = {_cell(d): d.get("flags") or [] for d in docs.values()}

    quality = quality_table(load_quality(list(quality_paths)))
    if len(quality):
        quality = quality.copy()
        quality["flags"] = [_joined(flags.get(k)) for k in zip(*(quality[c] for c in KEYS))]
    write_flagged_table(quality, out / "quality", "Quality (lm-eval)")

    scores_by_cell, notes = {}, []
    for path in samples_paths:
        doc = docs.get(str(Path(path).parent))
        if doc is None or doc.get("status") != Status.OK:
            continue  # failed and not-applicable cells have nothing to pair
        try:
            scores, why = cell_scores(read_samples(path))
        except (OSError, ValueError) as err:  # a truncated samples file: named, not fatal
            notes.append(f"{path} cannot be read ({type(err).__name__}): rerun its evaluation")
            continue
        model, quant, engine = _cell(doc)
        notes += [f"{model}/{quant}/{engine}: {n}" for n in why]
        scores_by_cell.update({(model, quant, engine, t): s for t, s in scores.items()})
    tasks = {k[3] for k in scores_by_cell}
    published, pub_notes = published_for(cfg, tasks)
    gate = gate_table(
        scores_by_cell,
        baseline_quant=base,
        tolerance=ev["tolerance"],
        alpha=ev["alpha"],
        published=published,
        seed=ev.get("seed", 0),
        pool_tasks=len(tasks) > 1,
    )
    gate["flags"] = [
        _joined(flags.get(k)) for k in zip(gate["model"], gate["quantization"], gate["engine"])
    ]
    write_flagged_table(
        _display(gate), out / "gate", f"Quality gate vs {base} (paired, per sample)"
    )

    task = ev["frontier_task"] or ("all" if len(tasks) > 1 else next(iter(tasks), None))
    speed = _speed_frame(cells_df)
    kv = None
    if engine_df is not None and len(engine_df) and "kv_cache_tokens" in engine_df:
        cells_only = engine_df[engine_df["engine"].fillna("") != ""]  # not the sweep's row
        kv = cells_only.reindex(columns=[*KEYS, "status", "kv_cache_tokens"])
        kv = kv.astype({"kv_cache_tokens": float})
    capacity = None  # the sweep's highest rate under its SLO, where a cell ran one
    if "point" in cells_df and "max_rate_under_slo" in cells_df:
        capacity = cells_df[(cells_df["scenario"] == "sweep") & (cells_df["point"] == "summary")]
        capacity = _keyed(capacity.reindex(columns=[*KEYS, "status", "max_rate_under_slo"]))
    frontier = frontier_table(
        _keyed(gate),
        _keyed(speed),
        _keyed(speed),
        None if kv is None else _keyed(kv),
        capacity_df=capacity,
        task=task,
        input_len=ev["frontier_input_len"],
        baseline_quant=base,
    )
    write_flagged_table(
        _display(frontier), out / "frontier", f"Quality / speed / memory frontier vs {base}"
    )
    plot_frontier(frontier, out / "frontier.png", out / "frontier.svg")
    flagged = sorted("/".join(k) for k, f in flags.items() if f)
    return {
        "gate_rows": len(gate),
        "collapsed": int((gate["verdict"] == "collapse").sum()),
        "frontier_rows": len(frontier),
        "flagged_cells": flagged,
        "notes": notes + pub_notes,
    }
