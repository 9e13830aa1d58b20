"""Published BF16 scores: the rows the reference tables give (lm-eval tasks and metrics) and the
check that the measured BF16 cell reproduces them; a baseline that does not makes the gate's
verdicts suspect (quantbench.quality.gate)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from quantbench.reference import load_hellaswag_l40, load_vllm_kvcache_lmeval


def published_check(
    measured_bf16: float | None,
    published: float,
    tolerance: float,
    stderr: float | None = None,
    *,
    z: float = 1.96,
) -> dict:
    """Does the measured BF16 score reproduce the published BF16 score?

    The allowed gap is ``max(tolerance, z * stderr)`` when ``stderr`` (of the measured score, or
    of the difference) is given: a small sample cannot be held to a tolerance tighter than its own
    noise. Returns ``{"measured", "published", "diff", "allowed", "verdict": "reproduced" |
    "evaluation suspect", "reason"}``.
    """
    allowed = (
        max(tolerance, z * stderr) if stderr is not None and math.isfinite(stderr) else (tolerance)
    )
    out = {"measured": measured_bf16, "published": published, "allowed": allowed}
    if measured_bf16 is None or not math.isfinite(measured_bf16):
        return {**out, "diff": None, "verdict": "evaluation suspect", "reason": "no BF16 score"}
    diff = measured_bf16 - published
    ok = abs(diff) <= allowed
    return {
        **out,
        "diff": diff,
        "verdict": "reproduced" if ok else "evaluation suspect",
        "reason": f"BF16 {measured_bf16:.4f} vs published {published:.4f} "
        f"({diff:+.4f}, allowed ±{allowed:.4f})",
    }


def published_entry(entry) -> dict:
    return entry if isinstance(entry, Mapping) else {"value": float(entry)}


# vllm_qwen3_235b_kvcache_lmeval.csv score columns -> (lm-eval task, lm-eval metric name).
_KVCACHE_SCORES = {
    "fda_contains": ("fda", "contains"),
    "humaneval_pass1": ("humaneval", "pass@1"),
    "ifeval_inst_loose": ("ifeval", "inst_level_loose_acc"),
    "ifeval_inst_strict": ("ifeval", "inst_level_strict_acc"),
    "ifeval_prompt_loose": ("ifeval", "prompt_level_loose_acc"),
    "ifeval_prompt_strict": ("ifeval", "prompt_level_strict_acc"),
    "mmlu_pro_economics_exact_match": ("mmlu_pro_economics", "exact_match"),
}
PUBLISHED_COLUMNS = [
    "source",
    "model",
    "quant",
    "format",
    "task",
    "metric",
    "value",
    "limit",
    "num_fewshot",
]


def published_quality(reference_dir: str | Path | None = None) -> pd.DataFrame:
    """Published lm-eval scores as tidy rows (``PUBLISHED_COLUMNS``), one per model x quant x
    task x metric: HellaSwag on L40 (``format`` as published, e.g. awq_marlin, gguf) and the
    Qwen3-235B-A22B-2507 FP8 / AWQ scores. ``model`` is the published checkpoint id."""
    hs = load_hellaswag_l40(reference_dir)
    hella = pd.DataFrame(
        {
            "source": "hellaswag_l40.csv",
            "model": hs["model"],
            "quant": hs["quant"],
            "format": hs["format"],
            "task": "hellaswag",
            "metric": "acc",
            "value": hs["acc"],
            "limit": hs["limit"],
            "num_fewshot": hs["num_fewshot"],
        }
    )
    kv = load_vllm_kvcache_lmeval(reference_dir)
    long = kv.melt(
        id_vars=["model", "quant", "limit"],
        value_vars=list(_KVCACHE_SCORES),
        var_name="column",
        value_name="value",
    )
    long["task"] = long["column"].map(lambda c: _KVCACHE_SCORES[c][0])
    long["metric"] = long["column"].map(lambda c: _KVCACHE_SCORES[c][1])
    long["source"] = "vllm_qwen3_235b_kvcache_lmeval.csv"
    out = pd.concat([hella, long], ignore_index=True)
    return out.reindex(columns=PUBLISHED_COLUMNS)


def published_baselines(
    published: pd.DataFrame,
    models: Mapping[str, str],
    *,
    quant: str = "bf16",
    metrics: Mapping[str, str] | None = None,
) -> dict[tuple[str, str], dict]:
    """``gate_table``'s ``published`` argument from ``published_quality`` rows.

    ``models`` maps the config's model name to the published checkpoint id (e.g. "qwen3-8b" ->
    "Qwen/Qwen3-8B"); ``metrics`` picks the metric of a task published with several (ifeval).
    Returns (model name, task) -> ``{"value", "metric", "limit", "source"}``.
    """
    out = {}
    rows = published[published["quant"] == quant]
    for name, model_id in models.items():
        for task, g in rows[rows["model"] == model_id].groupby("task"):
            if metrics and task in metrics:
                g = g[g["metric"] == metrics[task]]
            if len(g) != 1:
                raise ValueError(
                    f"{model_id}/{task}: {len(g)} published {quant} rows; choose a metric"
                )
            r = g.iloc[0]
            out[(name, task)] = {
                "value": float(r["value"]),
                "metric": r["metric"],
                "limit": None if pd.isna(r["limit"]) else int(r["limit"]),
                "source": r["source"],
            }
    return out
