"""Each measured batch-1 cell beside its published value: directly, as ratios that carry across
GPUs (quant / BF16 at the same length, each length / length 1), and as a share of the GPU's
memory-bandwidth roofline at decode — for the measured cell and for the published one. Memory
is also put against its floor (weights + KV cache of prompt and generated tokens), so a delta
reads as working memory of one implementation or the other."""

from __future__ import annotations

import pandas as pd

from quantbench import archs
from quantbench.reference import compare_with_published, load_qwen3_speed, normalise_quant
from quantbench.roofline import gpu_spec, mean_decode_context, resident_bytes, roofline_tok_s
from quantbench.status import MemorySource, Status
from quantbench.summary import summarize_lengths
from quantbench.tables import DECOMPRESSED_MARK, mean_with_spread, weights_mark

# Bits read per weight at decode, scales included (group-128 int4 ~ 4.25 bits).
WEIGHT_BITS = {"bf16": 16, "fp8": 8, "gptq-int8": 8.25, "gptq-int4": 4.25, "awq-int4": 4.25}
PUBLISHED_GPU = "NVIDIA H20"  # the Qwen3 tables' hardware (README of reference/)
# A cell is its engine, model, length, format and GPU count: a one-GPU cell has no published
# counterpart where the table ran that cell on two GPUs (Qwen3-32B BF16 at 129024).
KEYS = ["engine", "model", "input_len", "quant", "tp"]
# The scenarios whose rows are batch-1 cells: `single` (timed) and `memory` (memory only).
BATCH1_SCENARIOS = ("single", "memory")
# Each memory figure of a measured cell (column here: the engine's row key), every one read
# against the one published column: the whole request's peak, decode's peak alone, and what the
# run holds at its last token (the last two from the Transformers engine; the published cells
# sit just above weights + KV cache, with no transient).
MEMORY_FIGURES = {
    "gpu_mem_mb": "peak_mem_mb",
    "gpu_mem_decode_mb": "decode_peak_mem_mb",
    "gpu_mem_end_mb": "end_mem_mb",
}


def measured_cells(cells: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Mean over successful repeats of each batch-1 cell, named as the published tables name
    models, quantizations and engines (an engine instance by its kind; `instance` keeps its
    name). Memory is kept only where it was measured the published way."""
    batch1 = cells["scenario"].isin(BATCH1_SCENARIOS) & (cells["status"] == Status.OK)
    ok = cells[batch1].copy()
    if ok.empty:
        return pd.DataFrame(columns=KEYS)
    models, quants = config["models"], config["quantizations"]
    engines = config.get("engines") or {}
    ok["instance"] = ok["engine"]
    ok["tp"] = _tensor_parallel(ok, engines)
    ok["engine"] = ok["engine"].map(lambda e: (engines.get(e) or {}).get("kind", e))
    ok["model"] = ok["model"].map(lambda m: models.get(m, {}).get("reference_name", m))
    ok["quant"] = ok["quantization"].map(
        lambda q: _canonical(quants.get(q, {}).get("reference_quant", q))
    )
    ok = ok.dropna(subset=["quant"])
    published_way = ok["mem_method"] == MemorySource.TORCH_ALLOCATED
    for col, ours in MEMORY_FIGURES.items():
        ok[col] = ok.get(ours, pd.Series(float("nan"), ok.index)).where(published_way)
    if "weights_load_path" not in ok:  # only the Transformers engine reports it
        ok["weights_load_path"] = None
    for col, default in (("cached_tokens", float("nan")), ("cache_hit", False)):
        if col not in ok:
            ok[col] = default
    ok["cache_hit"] = ok["cache_hit"].fillna(False).astype(bool)
    keys = [*KEYS, "quantization", "instance"]
    agg = ok.groupby(keys, as_index=False).agg(
        cached_tokens=("cached_tokens", lambda c: c.sum(min_count=1)),
        cache_hits=("cache_hit", "sum"),
        **{col: (col, "max") for col in MEMORY_FIGURES},
        weights=("weights_load_path", weights_mark),
        output_len=("output_len", "first"),
        device_name=("device_name", "first"),
    )
    # Speed over the timed repeats: the one per-length summary (quantbench.summary); a cell
    # measured by the `memory` scenario alone has memory and no speed.
    timed = ok[ok["scenario"] == "single"]
    summaries = {k: summarize_lengths(g.to_dict("records"))[0] for k, g in timed.groupby(keys)}
    found = [summaries.get(tuple(r)) for r in agg[keys].itertuples(index=False)]
    nan = float("nan")
    agg["speed_tok_s"] = [s.spread("speed_tok_s").mean if s else nan for s in found]
    agg["speed_std"] = [s.spread("speed_tok_s").std if s else nan for s in found]
    agg["decode_speed_tok_s"] = [s.spread("decode_speed_tok_s").mean if s else nan for s in found]
    agg["repeats"] = [s.n_ok if s else 0 for s in found]
    return agg


def _tensor_parallel(rows: pd.DataFrame, engines: dict) -> pd.Series:
    """Each row's GPU count: as its job recorded it, else its engine instance's setting, else 1."""
    configured = rows["instance"].map(
        lambda e: (engines.get(e) or {}).get("tensor_parallel_size") or 1
    )
    recorded = rows.get("tensor_parallel_size", pd.Series(float("nan"), rows.index))
    return pd.to_numeric(recorded, errors="coerce").fillna(configured).astype(int)


def _canonical(name: str) -> str | None:
    try:
        return normalise_quant(name)
    except ValueError:
        return None  # a quantization with no published counterpart


def _arch_and_bits(row: pd.Series) -> tuple[dict, float] | None:
    """The cell's architecture and weight bits, or None where either is unknown."""
    if row["quant"] not in WEIGHT_BITS:
        return None
    try:
        return archs.load_arch(row["model"]), WEIGHT_BITS[row["quant"]]
    except (FileNotFoundError, KeyError):
        return None


def _roofline(row: pd.Series, gpu: str, decode_tok_s: float) -> float | None:
    known = _arch_and_bits(row)
    if known is None or gpu_spec(gpu) is None:
        return None
    arch, bits = known
    ctx = mean_decode_context(int(row["input_len"]), int(row.get("output_len") or 2048))
    bound = roofline_tok_s(arch, bits, ctx, gpu, int(row.get("tp") or 1))
    return decode_tok_s / bound


def _memory_floor_mb(row: pd.Series) -> float | None:
    """Weights + KV cache of prompt and generated tokens, for cells with a memory figure."""
    if pd.isna(row.get("gpu_mem_mb")) and pd.isna(row.get("gpu_mem_mb_published")):
        return None
    known = _arch_and_bits(row)
    if known is None:
        return None
    tokens = int(row["input_len"]) + int(row.get("output_len") or 2048)
    return resident_bytes(*known, tokens) / 2**20


def published_comparison(cells: pd.DataFrame, config: dict, reference_dir=None) -> pd.DataFrame:
    measured = measured_cells(cells, config)
    if measured.empty:
        return measured
    published = load_qwen3_speed(reference_dir)
    for col in MEMORY_FIGURES:
        published[col] = published["gpu_mem_mb"]
    values = ("speed_tok_s", *MEMORY_FIGURES)
    published = published.dropna(subset=["tp"]).astype({"tp": int})  # rows with no GPU count
    out = compare_with_published(measured, published, keys=KEYS, values=values)
    out["roofline_share"] = [
        _roofline(r, r["device_name"], r["decode_speed_tok_s"]) for _, r in out.iterrows()
    ]
    # The published speed counts prompt tokens; its decode rate is generated tokens over the
    # same time: speed x output / (prompt + output).
    pub_decode = (
        out["speed_tok_s_published"] * out["output_len"] / (out["input_len"] + out["output_len"])
    )
    out["roofline_share_published"] = [
        _roofline(r, PUBLISHED_GPU, d) for (_, r), d in zip(out.iterrows(), pub_decode)
    ]
    out["memory_floor_mb"] = pd.Series(
        [_memory_floor_mb(r) for _, r in out.iterrows()], index=out.index, dtype=float
    )
    out["over_floor_mb"] = out["gpu_mem_mb"] - out["memory_floor_mb"]
    out["over_floor_published_mb"] = out["gpu_mem_mb_published"] - out["memory_floor_mb"]
    return out


def _pct(x) -> str:
    if pd.isna(x):
        return ""
    text = f"{x:+.1f}%"
    return f"**{text}**" if abs(x) > 1.0 else text  # highlight deltas beyond 1%


def _num(x, fmt="{:.2f}") -> str:
    return "" if pd.isna(x) else fmt.format(x)


def comparison_table(out: pd.DataFrame) -> pd.DataFrame:
    """The readable table: values, ratios and roofline shares, deltas highlighted."""
    if out.empty:
        return pd.DataFrame(columns=["engine", "model", "input_len", "quant"])
    return pd.DataFrame(
        {
            "engine": out["instance"] if "instance" in out else out["engine"],
            "model": out["model"],
            "input_len": out["input_len"],
            "quant": out["quant"],
            "quantization": out["quantization"],
            "speed": list(
                map(mean_with_spread, out["speed_tok_s"], out["speed_std"], out["repeats"])
            ),
            "speed_published": out["speed_tok_s_published"].map(_num),
            "speed_ratio": out["speed_tok_s_ratio"].map(_num),
            "vs_bf16": out.get("speed_vs_bf16", pd.Series(dtype=float)).map(_num),
            "vs_bf16_published": out.get("speed_vs_bf16_published", pd.Series(dtype=float)).map(
                _num
            ),
            "vs_len1": out.get("speed_vs_len1", pd.Series(dtype=float)).map(_num),
            "vs_len1_published": out.get("speed_vs_len1_published", pd.Series(dtype=float)).map(
                _num
            ),
            # a decompressed load's memory is the dense model's: marked where it is shown
            "memory_mb": [
                _num(x, "{:.1f}")
                + (" (decompressed)" if _num(x) and w == DECOMPRESSED_MARK else "")
                for x, w in zip(out["gpu_mem_mb"], out["weights"].fillna(""))
            ],
            "memory_weights": out["weights"],
            "memory_published": out["gpu_mem_mb_published"].map(lambda x: _num(x, "{:.0f}")),
            "memory_delta": out["gpu_mem_mb_delta_pct"].map(_pct),
            "memory_decode": out["gpu_mem_decode_mb"].map(lambda x: _num(x, "{:.1f}")),
            "memory_decode_delta": out["gpu_mem_decode_mb_delta_pct"].map(_pct),
            "memory_end": out["gpu_mem_end_mb"].map(lambda x: _num(x, "{:.1f}")),
            "memory_end_delta": out["gpu_mem_end_mb_delta_pct"].map(_pct),
            "memory_floor": out["memory_floor_mb"].map(lambda x: _num(x, "{:.0f}")),
            "over_floor": out["over_floor_mb"].map(lambda x: _num(x, "{:+.0f}")),
            "over_floor_published": out["over_floor_published_mb"].map(
                lambda x: _num(x, "{:+.0f}")
            ),
            "roofline_share": out["roofline_share"].map(lambda x: _num(x, "{:.1%}")),
            "roofline_share_published": out["roofline_share_published"].map(
                lambda x: _num(x, "{:.1%}")
            ),
            "gpu": out["device_name"],
            "repeats": out["repeats"],
            # the engine's own count over the cell's requests: 0 when cache-free, else flagged
            "cached_tokens": [
                "not reported" if pd.isna(c) else (f"CACHE HIT {int(c)}" if h else int(c))
                for c, h in zip(out["cached_tokens"], out["cache_hits"])
            ],
        }
    )
