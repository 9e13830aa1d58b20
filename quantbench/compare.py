"""``quantbench compare RUN_A RUN_B``: two results directories joined cell by cell.

For every (model, quantization, engine) and workload present in either run: speed, latency and
memory as mean ± sd over the repeats, quality as score ± stderr, the difference B - A with its
standard error, and a verdict. A difference is called *within noise* when a test cannot tell it
from the repeats' spread (Welch's t-test over repeats for speed and memory; a z-test on the two
stderrs for quality; p >= alpha, 0.05 by default). One repeat gives no spread: its difference is
reported but not judged. Written as compare.md, compare.csv and compare.html.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from quantbench.status import CELL_COLUMNS, Status

CELL = CELL_COLUMNS
# scenario: (workload columns, [(metric column, label, which direction is better)])
METRICS = {
    "single": (
        ["input_len", "output_len"],
        [
            ("speed_tok_s", "speed tok/s", "higher"),
            ("decode_speed_tok_s", "decode tok/s", "higher"),
            ("ttft_ms", "TTFT ms", "lower"),
            ("peak_mem_mb", "peak memory MB", "lower"),
        ],
    ),
    "serving": (
        ["request_rate", "max_concurrency", "num_prompts", "input_len", "output_len"],
        [
            ("output_throughput", "output tok/s", "higher"),
            ("request_throughput", "requests/s", "higher"),
            ("ttft_median_ms", "TTFT median ms", "lower"),
            ("tpot_mean_ms", "TPOT mean ms", "lower"),
        ],
    ),
    "batch": (
        ["batch_size", "input_len", "output_len"],
        [
            ("output_throughput_tok_s", "output tok/s", "higher"),
            ("latency_s", "latency s", "lower"),
            ("peak_mem_mb", "peak memory MB", "lower"),
        ],
    ),
}
COLUMNS = [
    *CELL,
    "scenario",
    "workload",
    "metric",
    "a",
    "b",
    "delta",
    "delta_pct",
    "se_delta",
    "p",
    "verdict",
]


@dataclass
class Run:
    path: Path  # the results directory
    requests: pd.DataFrame  # report/requests.csv: every measured request row
    quality: pd.DataFrame  # one row per (cell, task, metric, filter) with value, stderr


# The report's request rows; reports written before the rename call it cells.csv.
_REQUEST_FILES = ("requests.csv", "cells.csv")


def _results_dir(path: str | Path) -> Path:
    p = Path(path)
    if any((p / f).exists() for f in _REQUEST_FILES) and not (p / "report").is_dir():
        return p.parent  # a report directory was given
    return p


def load_run(path: str | Path) -> Run:
    """A results directory's measured rows (report/requests.csv, else re-read from bench/) and its
    quality scores (eval/*/*/*/quality.json)."""
    from quantbench.quality.report import load_quality
    from quantbench.report import load_bench

    root = _results_dir(path)
    csv = next((c for f in _REQUEST_FILES if (c := root / "report" / f).exists()), None)
    if csv is not None:
        requests = pd.read_csv(csv)
    else:
        bench = [str(p) for p in sorted(root.glob("bench/*/*/*/*.json")) if p.name != "engine.json"]
        requests = load_bench(bench)
    if not len(requests) and not (root / "eval").is_dir():
        raise FileNotFoundError(f"{root}: no report/requests.csv, bench/ or eval/ results")
    quality = load_quality([str(p) for p in sorted(root.glob("eval/*/*/*/quality.json"))])
    return Run(root, requests, quality)


def _stats(rows: pd.DataFrame, column: str) -> dict:
    ok = rows[rows["status"] == Status.OK] if "status" in rows else rows
    values = pd.to_numeric(ok.get(column, pd.Series(dtype=float)), errors="coerce").dropna()
    if values.empty:
        status = rows["status"].iloc[0] if "status" in rows and len(rows) else "missing"
        reason = rows.get("reason", pd.Series([None] * len(rows))).iloc[0] if len(rows) else None
        text = f"{status}: {str(reason).splitlines()[0][:80]}" if pd.notna(reason) else status
        return {"n": 0, "status": text}
    sd = float(values.std()) if len(values) > 1 else math.nan
    return {"n": len(values), "mean": float(values.mean()), "sd": sd, "status": Status.OK}


def _fmt(s: dict | None, digits: int = 2) -> str:
    if s is None:
        return "absent"
    if not s["n"]:
        return s["status"]
    spread = f" ± {s['sd']:.{digits}f}" if not math.isnan(s["sd"]) else ""
    return f"{s['mean']:.{digits}f}{spread} (n={s['n']})"


def _welch_p(a: dict, b: dict) -> tuple[float, float]:
    """Standard error of B - A and Welch's two-sided p; nan when a side has one repeat."""
    if a["n"] < 2 or b["n"] < 2:
        return math.nan, math.nan
    se = math.sqrt(a["sd"] ** 2 / a["n"] + b["sd"] ** 2 / b["n"])
    delta = b["mean"] - a["mean"]
    if se == 0:
        return 0.0, (1.0 if delta == 0 else 0.0)
    from scipy import stats

    va, vb = a["sd"] ** 2 / a["n"], b["sd"] ** 2 / b["n"]
    dof = (va + vb) ** 2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1))
    return se, float(2 * stats.t.sf(abs(delta) / se, dof))


def _z_p(a: dict, b: dict) -> tuple[float, float]:
    sa, sb = a.get("sd"), b.get("sd")
    if sa is None or sb is None or math.isnan(sa) or math.isnan(sb):
        return math.nan, math.nan
    se = math.hypot(sa, sb)
    delta = b["mean"] - a["mean"]
    if se == 0:
        return 0.0, (1.0 if delta == 0 else 0.0)
    return se, math.erfc(abs(delta) / se / math.sqrt(2))


def _verdict(a, b, p: float, better: str, alpha: float) -> str:
    if a is None or b is None:
        return "only in A" if b is None else "only in B"
    if not a["n"] or not b["n"]:
        return "not comparable: " + ("A " + a["status"] if not a["n"] else "B " + b["status"])
    if a["mean"] == b["mean"]:
        return "identical"
    if math.isnan(p):
        return "not judged: no spread (one repeat or no stderr)"
    if p >= alpha:
        return f"within noise (p={p:.2g})"
    up = b["mean"] > a["mean"]
    good = up == (better == "higher")
    return f"{'B better' if good else 'B worse'} ({'higher' if up else 'lower'}, p={p:.2g})"


def _row(key: dict, a: dict | None, b: dict | None, better: str, alpha: float, test,
         digits: int = 2) -> dict:
    row = {**key, "a": _fmt(a, digits), "b": _fmt(b, digits), "delta": "", "delta_pct": "",
           "se_delta": "", "p": ""}
    p = math.nan
    if a and b and a["n"] and b["n"]:
        delta = b["mean"] - a["mean"]
        se, p = test(a, b)
        row.update(
            delta=f"{delta:+.{digits}f}",
            delta_pct=f"{100 * delta / a['mean']:+.1f}%" if a["mean"] else "",
            se_delta="" if math.isnan(se) else f"{se:.{digits}f}",
            p="" if math.isnan(p) else f"{p:.3g}",
        )
    row["verdict"] = _verdict(a, b, p, better, alpha)
    return row


def _groups(cells: pd.DataFrame, scenario: str, keys: list[str]) -> dict:
    if cells.empty or "scenario" not in cells:
        return {}
    rows = cells[cells["scenario"] == scenario]
    keys = [k for k in keys if k in rows]
    out = {}
    for key, group in rows.groupby(CELL + keys, dropna=False, sort=True):
        workload = ", ".join(
            f"{k}={int(v) if isinstance(v, float) and v.is_integer() else v}"
            for k, v in zip(keys, key[3:])
            if pd.notna(v)
        )
        out[(*key[:3], workload)] = (key, group)
    return out


def _order(key: tuple, *groups: dict):
    """Sort cells by name, workloads by their values (input_len 1 < 256 < 1024)."""
    for g in groups:
        if key in g:
            return tuple((0, v, "") if isinstance(v, (int, float)) and pd.notna(v)
                         else (1, 0, str(v)) for v in g[key][0])
    return ()


def compare_runs(a: Run, b: Run, alpha: float = 0.05) -> pd.DataFrame:
    rows = []
    for scenario, (keys, metrics) in METRICS.items():
        ga, gb = _groups(a.requests, scenario, keys), _groups(b.requests, scenario, keys)
        for key in sorted(set(ga) | set(gb), key=lambda k: _order(k, ga, gb)):
            base = dict(zip(CELL, key[:3]), scenario=scenario, workload=key[3])
            for column, label, better in metrics:
                if not any(column in g[key][1] for g in (ga, gb) if key in g):
                    continue  # a metric this scenario's rows do not carry
                sides = [_stats(g[key][1], column) if key in g else None for g in (ga, gb)]
                rows.append(_row({**base, "metric": label}, *sides, better, alpha, _welch_p))
    qa, qb = (_quality(r.quality) for r in (a, b))
    for key in sorted(set(qa) | set(qb), key=str):
        model, quant, engine, task, metric, filt = key
        base = {"model": model, "quantization": quant, "engine": engine,
                "scenario": "quality", "workload": task, "metric": f"{metric} ({filt})"}
        rows.append(_row(base, qa.get(key), qb.get(key), "higher", alpha, _z_p, digits=4))
    return pd.DataFrame(rows, columns=COLUMNS)


def _quality(q: pd.DataFrame) -> dict:
    out = {}
    if q.empty:
        return out
    for r in q.to_dict("records"):
        key = (r["model"], r["quantization"], r["engine"], r.get("task", ""), r.get("metric", ""),
               r.get("filter", "none"))
        value = r.get("value")
        if r.get("status") == Status.OK and value is not None and pd.notna(value):
            stderr = r.get("stderr")
            sd = float(stderr) if stderr is not None and pd.notna(stderr) else math.nan
            n = int(r.get("n") or 1)
            out[key] = {"n": n, "mean": float(value), "sd": sd, "status": Status.OK}
        else:
            reason = str(r.get("reason") or "").splitlines()[:1]
            out[key] = {"n": 0, "status": ": ".join([str(r.get("status"))] + reason)}
    return out


def _provenance(run: Run) -> str:
    parts = []
    for col in ("engine_version", "device_name"):
        if col in run.requests:
            values = sorted({str(v) for v in run.requests[col].dropna()})
            parts.append(f"{col}: " + ", ".join(values))
    return "; ".join(parts)


def summary(table: pd.DataFrame) -> dict[str, int]:
    kinds = table["verdict"].str.extract(r"^(within noise|identical|B better|B worse|not judged|"
                                         r"not comparable|only in A|only in B)")[0]
    return kinds.value_counts().to_dict()


def to_markdown(table: pd.DataFrame, a: Run, b: Run, alpha: float = 0.05) -> str:
    counts = ", ".join(f"{k}: {v}" for k, v in summary(table).items())
    head = [
        f"# quantbench compare: A = `{a.path}` vs B = `{b.path}`",
        "",
        f"- A: {_provenance(a) or 'no measured rows'}",
        f"- B: {_provenance(b) or 'no measured rows'}",
        f"- verdicts: {counts or 'none'}",
        f"- delta = B - A; se_delta its standard error; p: Welch's t over repeats (speed, memory) "
        f"or a z-test on the stderrs (quality); p >= {alpha} is called within noise.",
        "",
    ]
    body = table.to_markdown(index=False) if len(table) else "_no cells in either run_"
    return "\n".join(head) + body + "\n"


def to_html(table: pd.DataFrame, a: Run, b: Run, alpha: float = 0.05) -> str:
    from quantbench.report_html import esc, page, table_html

    shown = table.copy()
    # the page's cell colours: "B worse" reads as failed, "B better" as pass
    shown["verdict"] = shown["verdict"].str.replace(r"^B worse", "failed · B worse", regex=True)
    shown["verdict"] = shown["verdict"].str.replace(r"^B better", "pass · B better", regex=True)
    shown["verdict"] = shown["verdict"].str.replace(r"^within noise", "inconclusive · within noise",
                                                    regex=True)
    meta = f"A = {esc(a.path)} ({esc(_provenance(a))})<br>B = {esc(b.path)} ({esc(_provenance(b))})"
    counts = " · ".join(f"{esc(k)}: {v}" for k, v in summary(table).items())
    body = (f"<p class='note'>{counts}. delta = B − A; p ≥ {alpha}: within noise.</p>"
            + table_html(shown, table_id="t-compare"))
    return page("quantbench compare", meta, body)


def write_comparison(run_a, run_b, out_dir, alpha: float = 0.05) -> tuple[pd.DataFrame, str]:
    from quantbench.io import atomic_write_text

    a, b = load_run(run_a), load_run(run_b)
    table = compare_runs(a, b, alpha)
    out = Path(out_dir)
    md = to_markdown(table, a, b, alpha)
    atomic_write_text(out / "compare.md", md)
    atomic_write_text(out / "compare.csv", table.to_csv(index=False))
    atomic_write_text(out / "compare.html", to_html(table, a, b, alpha))
    return table, md
