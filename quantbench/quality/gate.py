"""Is a quantized cell's quality drop real? Paired per-sample comparison against BF16.

Aggregate scores of two cells differ by sampling noise; comparing the *same* documents removes
most of it (both cells see identical questions), so the test is paired: McNemar's exact test for
0/1 correctness, a paired bootstrap otherwise. A drop is only called a collapse when it is both
significant and larger than the tolerance. Before any of that is trusted, the BF16 cell must
reproduce a published BF16 score: a broken evaluation (no chat template, wrong filter) makes every
quantization look equal, or equally bad.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from quantbench.quality.baseline import published_check, published_entry
from quantbench.status import CELL_COLUMNS

_FALLBACK_METRICS = ("acc", "exact_match", "pass@1", "contains")


def read_samples(path: str | Path) -> list[dict]:
    """The rows of a per-sample ``samples.jsonl`` (one lm-eval logged sample per line)."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sample_scores(
    samples: Iterable[dict],
    *,
    metric: str | Mapping[str, str] | None = None,
    filter_key: str | Mapping[str, str] | None = None,
) -> dict[str, dict[Any, float]]:
    """Per-sample scores ``{task: {doc_id: score}}`` from lm-eval logged samples.

    Each sample needs ``task``, ``doc_id`` and the metric's value (lm-eval writes metric values
    into the sample, e.g. ``"acc": 1.0``). ``metric`` (one name, or task -> name) defaults to the
    first name in the sample's ``metrics`` list, else the first of acc / exact_match / pass@1 /
    contains present. lm-eval logs one sample per (document, filter): a task logged under several
    filters needs ``filter_key`` (one name, or task -> name) to say which; rows without a
    ``filter`` field count as one filter.
    Raises ValueError on an ambiguous filter, a duplicate doc_id or a non-scalar score.
    """
    samples = list(samples)
    filters: dict[str, set] = {}
    for s in samples:
        filters.setdefault(s["task"], set()).add(s.get("filter"))
    out: dict[str, dict[Any, float]] = {}
    for task, seen in filters.items():
        want = filter_key.get(task) if isinstance(filter_key, Mapping) else filter_key
        if want is None and len(seen) > 1:
            raise ValueError(f"{task}: logged under filters {sorted(map(str, seen))}; pick one")
    for s in samples:
        task = s["task"]
        want = filter_key.get(task) if isinstance(filter_key, Mapping) else filter_key
        if want is not None and s.get("filter") != want:
            continue
        name = metric.get(task) if isinstance(metric, Mapping) else metric
        if name is None:
            listed = s.get("metrics") or [m for m in _FALLBACK_METRICS if m in s]
            if not listed:
                raise ValueError(f"{task}: no metric in sample {s.get('doc_id')!r}; name one")
            name = listed[0]
        value = s.get(name)
        if not isinstance(value, (int, float, np.number)):  # bool is an int: True -> 1.0
            # Corpus-level metrics (bleu, f1) log per-sample tuples that cannot be paired.
            raise ValueError(f"{task}: {name}={value!r} is not a per-sample score")
        doc_scores = out.setdefault(task, {})
        if s["doc_id"] in doc_scores:
            raise ValueError(f"{task}: doc_id {s['doc_id']!r} appears twice")
        doc_scores[s["doc_id"]] = float(value)
    return out


def _sorted_keys(keys) -> list:
    try:
        return sorted(keys)
    except TypeError:  # mixed key types: any fixed order keeps the bootstrap reproducible
        return sorted(keys, key=repr)


def paired_comparison(
    base: Mapping[Any, float],
    quant: Mapping[Any, float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Quantized vs baseline on the documents both scored.

    Inputs: ``base`` and ``quant`` doc_id -> per-sample score (0/1 correctness or any number);
    only doc_ids present in both are compared. Returns ``n`` (paired), ``n_base_only``,
    ``n_quant_only``, ``base_mean``, ``quant_mean``, ``delta`` (quant - base), ``ci_low`` /
    ``ci_high`` (percentile paired-bootstrap interval of delta at 1 - alpha; NaN below two pairs),
    ``binary``, ``test`` and ``p_value`` (two-sided): for binary scores McNemar's exact test
    (``b`` = base right / quant wrong, ``c`` = base wrong / quant right, binomial(b + c, 1/2) on c),
    otherwise the paired bootstrap's share of resampled deltas at least as far from the observed
    delta as the observed delta is from zero. Also ``alpha``, ``n_boot``, ``seed``.
    """
    keys = _sorted_keys(set(base) & set(quant))
    b = np.array([base[k] for k in keys], dtype=float)
    q = np.array([quant[k] for k in keys], dtype=float)
    d = q - b
    n = len(keys)
    out: dict[str, Any] = {
        "n": n,
        "n_base_only": len(set(base) - set(quant)),
        "n_quant_only": len(set(quant) - set(base)),
        "base_mean": float(b.mean()) if n else math.nan,
        "quant_mean": float(q.mean()) if n else math.nan,
        "delta": float(d.mean()) if n else math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "binary": bool(n) and bool(np.isin(np.concatenate([b, q]), (0.0, 1.0)).all()),
        "test": None,
        "p_value": math.nan,
        "alpha": alpha,
        "n_boot": n_boot,
        "seed": seed,
    }
    if n == 0:
        return out
    boot = None
    if n >= 2:
        res = stats.bootstrap(
            (d,),
            np.mean,
            n_resamples=n_boot,
            confidence_level=1 - alpha,
            method="percentile",  # BCa is undefined when every pair agrees (all-zero deltas)
            rng=np.random.default_rng(seed),
            batch=256,  # bounds memory at 256 x n per batch
        )
        out["ci_low"], out["ci_high"] = map(float, res.confidence_interval)
        boot = res.bootstrap_distribution
    if out["binary"]:
        n_b = int(((b == 1) & (q == 0)).sum())
        n_c = int(((b == 0) & (q == 1)).sum())
        p = stats.binomtest(n_c, n_b + n_c, 0.5).pvalue if n_b + n_c else 1.0
        out.update(test="mcnemar-exact", p_value=float(p), b=n_b, c=n_c)
    elif boot is not None:
        # Shifting the bootstrap distribution to zero gives the null distribution of the mean.
        extreme = np.abs(boot - d.mean()) >= abs(d.mean()) - 1e-12
        out.update(test="paired-bootstrap", p_value=float((1 + extreme.sum()) / (1 + len(boot))))
    return out


def gate(comparison: Mapping, *, tolerance: float, alpha: float = 0.05) -> dict:
    """Verdict on a ``paired_comparison``: ``{"verdict", "reason"}``.

    ``collapse``: the drop is significant (p < alpha) and larger than ``tolerance`` (delta <
    -tolerance, in score units: 0.02 = two points of accuracy). ``pass``: the interval rules out a
    drop beyond tolerance (ci_low >= -tolerance), or the cell is significantly better.
    ``inconclusive``: neither (too few samples to tell), or nothing paired.
    """
    n, delta, p = comparison["n"], comparison["delta"], comparison["p_value"]
    lo, hi = comparison["ci_low"], comparison["ci_high"]
    if not n or math.isnan(p):
        return {"verdict": "inconclusive", "reason": f"{n} paired samples: no test"}
    summary = f"delta {delta:+.4f} [{lo:+.4f}, {hi:+.4f}], p={p:.3g}, n={n}"
    if p < alpha and delta < -tolerance:
        return {"verdict": "collapse", "reason": f"significant drop beyond -{tolerance}: {summary}"}
    if lo >= -tolerance or (p < alpha and delta > 0):
        return {"verdict": "pass", "reason": f"no drop beyond -{tolerance}: {summary}"}
    return {
        "verdict": "inconclusive",
        "reason": f"cannot rule out a drop beyond -{tolerance}: {summary}",
    }


GATE_COLUMNS = [
    *CELL_COLUMNS,
    "task",
    "baseline_engine",
    "n",
    "base_mean",
    "quant_mean",
    "delta",
    "ci_low",
    "ci_high",
    "test",
    "p_value",
    "b",
    "c",
    "verdict",
    "paired_verdict",
    "reason",
    "baseline_suspect",
    "baseline_check",
]


def gate_table(
    samples_by_cell: Mapping[tuple[str, str, str, str], Mapping[Any, float]],
    *,
    baseline_quant: str = "bf16",
    tolerance: float,
    alpha: float = 0.05,
    published: Mapping[tuple[str, str], Any] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    pool_tasks: bool = False,
) -> pd.DataFrame:
    """The gate for every quantized cell x task, plus one row per baseline cell x task.

    Inputs: ``samples_by_cell`` (model, quantization, engine, task) -> {doc_id: score} (see
    ``sample_scores``); ``published`` (model, task) -> published BF16 score, either a number or
    ``{"value", "stderr"?, "tolerance"?, "limit"?}`` (``published_baselines`` builds it).
    A quantized cell is compared with the baseline of the same model and task on the same engine,
    else on the first engine (sorted) that has one (``baseline_engine`` says which).
    ``pool_tasks`` adds task "all": every task's documents as one paired sample.

    A model whose baseline (on that baseline engine) fails ``published_check`` on any task makes
    every row compared against it ``verdict`` "evaluation suspect"; ``paired_verdict`` keeps the
    statistical verdict. Baseline rows have verdict "baseline" (or "evaluation suspect").
    Columns: ``GATE_COLUMNS``.
    """
    cells = {k: dict(v) for k, v in samples_by_cell.items()}
    if pool_tasks:
        pooled: dict[tuple, dict] = {}
        for (model, quant, engine, task), scores in samples_by_cell.items():
            target = pooled.setdefault((model, quant, engine, "all"), {})
            target.update({(task, doc): v for doc, v in scores.items()})
        cells.update(pooled)
    published = published or {}

    checks: dict[tuple, dict] = {}  # (model, engine, task) -> published_check
    for (model, quant, engine, task), scores in cells.items():
        if quant != baseline_quant or (model, task) not in published:
            continue
        entry = published_entry(published[(model, task)])
        values = np.array(list(scores.values()), dtype=float)
        stderr = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else None
        check = published_check(
            float(values.mean()) if len(values) else None,
            entry["value"],
            entry.get("tolerance", tolerance),
            entry.get("stderr", stderr),
        )
        if entry.get("limit") and entry["limit"] != len(values):
            check["reason"] += f"; n={len(values)} vs published limit {entry['limit']}"
        checks[(model, engine, task)] = check

    def suspect(model, engine):
        bad = [
            f"{task}: {c['reason']}"
            for (m, e, task), c in sorted(checks.items())
            if (m, e) == (model, engine) and c["verdict"] != "reproduced"
        ]
        has_check = any((m, e) == (model, engine) for m, e, _ in checks)
        return (bool(bad) if has_check else None), "; ".join(bad)

    rows = []
    for (model, quant, engine, task), scores in sorted(cells.items()):
        if quant == baseline_quant:
            is_suspect, why = suspect(model, engine)
            check = checks.get((model, engine, task))
            values = np.array(list(scores.values()), dtype=float)
            rows.append(
                {
                    "model": model,
                    "engine": engine,
                    "quantization": quant,
                    "task": task,
                    "baseline_engine": engine,
                    "n": len(values),
                    "base_mean": float(values.mean()) if len(values) else math.nan,
                    "quant_mean": float(values.mean()) if len(values) else math.nan,
                    "delta": 0.0,
                    "ci_low": 0.0,
                    "ci_high": 0.0,
                    "verdict": "evaluation suspect" if is_suspect else "baseline",
                    "reason": check["reason"] if check else why,
                    "baseline_suspect": is_suspect,
                    "baseline_check": check["verdict"] if check else None,
                }
            )
            continue
        engines = sorted(
            e for (m, qn, e, t) in cells if (m, qn, t) == (model, baseline_quant, task)
        )
        base_engine = engine if engine in engines else (engines[0] if engines else None)
        row = {"model": model, "engine": engine, "quantization": quant, "task": task}
        if base_engine is None:
            rows.append(
                {
                    **row,
                    "n": 0,
                    "verdict": "inconclusive",
                    "reason": f"no {baseline_quant} baseline for {model}/{task}",
                }
            )
            continue
        comp = paired_comparison(
            cells[(model, baseline_quant, base_engine, task)],
            scores,
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
        )
        verdict = gate(comp, tolerance=tolerance, alpha=alpha)
        is_suspect, why = suspect(model, base_engine)
        check = checks.get((model, base_engine, task))
        rows.append(
            {
                **row,
                "baseline_engine": base_engine,
                **{k: comp.get(k) for k in GATE_COLUMNS if k in comp},
                "paired_verdict": verdict["verdict"],
                "verdict": "evaluation suspect" if is_suspect else verdict["verdict"],
                "reason": f"baseline suspect: {why}" if is_suspect else verdict["reason"],
                "baseline_suspect": is_suspect,
                "baseline_check": check["verdict"] if check else None,
            }
        )
    return pd.DataFrame(rows).reindex(columns=GATE_COLUMNS)
