"""Published reference tables (see ``reference/README.md``) and cell-by-cell comparison.

Speed depends on the GPU, so besides raw measured/published ratios the comparison reports
"ratios of ratios": a quant's speed over BF16 and a length's speed over length 1, measured vs
published. Those should reproduce on other hardware where raw tokens/s cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from quantbench.io import REPO_ROOT as _REPO  # noqa: E402 - the workflow's directory

QUANTS = ("bf16", "fp8", "gptq-int8", "gptq-int4", "awq-int4")
_QUANT_NAMES = {
    "bf16": "bf16",
    "fp8": "fp8",
    "gptq-int8": "gptq-int8",
    "gptq-int4": "gptq-int4",
    "awq-int4": "awq-int4",
    "awq": "awq-int4",  # Qwen's AWQ checkpoints are all 4-bit
    "awq_marlin": "awq-int4",
}


def default_reference_dir() -> Path:
    """The published tables the workflow ships (``reference/``)."""
    return _REPO / "reference"


def _read(name: str, reference_dir: str | Path | None) -> pd.DataFrame:
    return pd.read_csv(Path(reference_dir or default_reference_dir()) / name)


def normalise_quant(name: str) -> str:
    """Canonical lower-case quant name: "GPTQ-INT4" / "GPTQ-Int4" -> "gptq-int4"."""
    key = str(name).strip().lower()
    if key not in _QUANT_NAMES:
        raise ValueError(f"unknown quantization {name!r}")
    return _QUANT_NAMES[key]


def load_qwen3_speed(reference_dir: str | Path | None = None) -> pd.DataFrame:
    """The Qwen3 speed benchmark (H20, batch 1), one row per published cell (216).

    Columns: engine, model, input_len, quant, gpus, speed_tok_s, gpu_mem_mb, note, tp, kernel,
    supported. Cells published as "-" have ``supported`` False and missing numbers.
    """
    raw = _read("qwen3_speed_benchmark.csv", reference_dir).astype({"note": "string"})
    df = raw[["engine", "model"]].copy()
    # The tables print 129042 for the longest input; the page's text says 129024, which also fits
    # the pattern of every other length (prompt + 2048 generated = 2^k: 131072 - 2048 = 129024).
    df["input_len"] = raw["input_len"].replace(129042, 129024).astype(int)
    df["quant"] = raw["quant"].map(normalise_quant)
    supported = raw["speed_tok_s"].astype(str).str.strip() != "-"
    df["gpus"] = pd.to_numeric(raw["gpus"], errors="coerce").astype("Int64")
    df["speed_tok_s"] = pd.to_numeric(raw["speed_tok_s"], errors="coerce")
    df["gpu_mem_mb"] = pd.to_numeric(raw["gpu_mem_mb"], errors="coerce")  # SGLang: not reported
    df["note"] = raw["note"].fillna("")
    tp = df["note"].str.extract(r"TP=(\d+)", expand=False).astype("Int64")
    # Cells without a TP note ran on one GPU, i.e. TP 1 (every multi-GPU cell carries "TP=n").
    df["tp"] = tp.fillna(df["gpus"].where(df["gpus"] == 1))
    kernel = df["note"].str.extract(r"([A-Za-z]+-Marlin)", expand=False)
    df["kernel"] = kernel.astype("string")
    df["supported"] = supported
    return df


def load_vllm_serving_l40(reference_dir: str | Path | None = None) -> pd.DataFrame:
    """vLLM online serving of Qwen3-8B on one L40; adds canonical ``quant`` and ``kernel``."""
    df = _read("vllm_serving_l40_qwen3_8b.csv", reference_dir)
    flag = df["quantization"].fillna("")  # vLLM --quantization value; empty = unquantised BF16
    df["quant"] = flag.replace("", "bf16").map(normalise_quant)
    df["kernel"] = flag.map({"awq": "awq", "awq_marlin": "awq_marlin"}).astype("string")
    return df


def load_hellaswag_l40(reference_dir: str | Path | None = None) -> pd.DataFrame:
    """HellaSwag (0-shot, 400 items) on one L40; adds a canonical ``quant``."""
    df = _read("hellaswag_l40.csv", reference_dir)
    # GGUF rows name their type after the colon in the model id (":Q4_K_M" -> "gguf-q4_k_m").
    df["quant"] = [
        "gguf-" + model.rsplit(":", 1)[1].lower() if fmt == "gguf" else normalise_quant(fmt)
        for fmt, model in zip(df["format"], df["model"], strict=True)
    ]
    return df


def load_sglang_batch(reference_dir: str | Path | None = None) -> pd.DataFrame:
    """SGLang fixed-batch runs of Qwen3-235B-A22B-Instruct-2507-FP8 on 8xH200 / 8xB200.

    Kept as published, including the B200 batch-2 input throughput that is half its neighbours.
    """
    return _read("sglang_qwen3_235b_fp8_batch.csv", reference_dir)


def load_vllm_kvcache_lmeval(reference_dir: str | Path | None = None) -> pd.DataFrame:
    """vLLM KV-cache capacity and lm-eval scores of Qwen3-235B-A22B-2507 FP8 vs AWQ."""
    df = _read("vllm_qwen3_235b_kvcache_lmeval.csv", reference_dir)
    df["quant"] = df["quant"].map(normalise_quant)
    return df


def _relative(df: pd.DataFrame, value: str, group: list[str], col: str, base) -> pd.Series:
    """``value`` divided by ``value`` of the row with ``col == base`` in the same ``group`` (the
    mean where several rows are the base, e.g. one BF16 cell under two names)."""
    base_rows = (
        df.loc[df[col] == base]
        .groupby(group, as_index=False)[value]
        .mean()
        .rename(columns={value: "_base"})
    )
    merged = df[group].merge(base_rows, on=group, how="left", validate="many_to_one")
    return pd.Series(df[value].to_numpy() / merged["_base"].to_numpy(), index=df.index)


def compare_with_published(
    measured: pd.DataFrame,
    published: pd.DataFrame,
    keys: Sequence[str] = ("engine", "model", "input_len", "quant"),
    values: Sequence[str] = ("speed_tok_s", "gpu_mem_mb"),
    speed: str = "speed_tok_s",
    base_quant: str = "bf16",
    base_len: int = 1,
) -> pd.DataFrame:
    """Join measured cells to published ones (left join on ``keys``) and add ratios.

    For each of ``values`` present in ``measured``: ``<v>_published``, ``<v>_ratio`` (measured /
    published) and ``<v>_delta_pct``. Memory is meant to be read this way, directly.
    For ``speed``, ratios of ratios, each computed inside its own frame first:
    ``speed_vs_bf16`` (any quant / ``base_quant`` at the same other keys) and ``speed_vs_len1``
    (any input_len / ``base_len``), each with ``_published`` and ``_ratio`` (measured/published).
    A missing baseline or an unsupported published cell gives NaN. Measured rows may carry a
    ``quantization`` (the config's name) beside ``quant``: two configs' quantizations of one
    published kind (on-the-fly and block FP8, say) stay two rows, each beside the one cell; and
    an ``instance`` (the engine instance's name) beside ``engine`` (its kind), likewise.
    """
    keys = list(keys)
    values = [v for v in values if v in measured.columns and v in published.columns]
    pub = published[keys + values].copy()
    mea = measured.copy()
    for frame in (mea, pub):
        if speed in frame.columns:
            for name, col, base in (
                ("speed_vs_bf16", "quant", base_quant),
                ("speed_vs_len1", "input_len", base_len),
            ):
                if col in keys:
                    others = [k for k in keys if k != col]
                    if col != "quant":  # a cell's own lengths: its names, not its kinds
                        others += [c for c in ("quantization", "instance") if c in frame.columns]
                    frame[name] = _relative(frame, speed, others, col, base)
    ratio_cols = [c for c in ("speed_vs_bf16", "speed_vs_len1") if c in mea.columns]
    pub = pub.rename(columns={c: f"{c}_published" for c in values + ratio_cols})
    out = mea.merge(pub, on=keys, how="left", validate="many_to_one")
    for v in values:
        out[f"{v}_ratio"] = out[v] / out[f"{v}_published"]
        out[f"{v}_delta_pct"] = (out[f"{v}_ratio"] - 1) * 100
    for c in ratio_cols:
        out[f"{c}_ratio"] = out[c] / out[f"{c}_published"]
    return out
