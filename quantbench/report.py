"""Aggregate result files into the report: CSV of every cell, Markdown/HTML tables in the
layout of the published Qwen3 speed tables, a quality table and plots."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from quantbench.io import atomic_write_text, save_figure
from quantbench.results import read_result
from quantbench.status import CELL_COLUMNS, CellKey, Status
from quantbench.summary import summarize_lengths

CELL_KEYS = CELL_COLUMNS
# Every measured request row of every cell (older reports named it cells.csv).
REQUESTS_CSV = "requests.csv"


def _cell(prov: dict) -> dict:
    return CellKey.of(prov)._asdict()


def load_bench(paths: list[str], config: dict | None = None) -> pd.DataFrame:
    """Every measured request row, with its cell and provenance columns. A planned file that is
    missing or unreadable is a row with its status (`not run`, `failed`) and why."""
    frames = []
    for path in paths:
        doc = read_result(path, config)
        if doc["status"] == Status.SKIPPED:  # a scenario the cell did not ask for
            continue
        prov = doc["provenance"]
        extra = {
            **_cell(prov),
            "engine_version": prov["engine_version"],
            "device_name": prov["device_name"],
            "file_status": doc["status"],
            "log": doc.get("log"),
        }
        rows = doc["rows"] or [
            {"scenario": doc["scenario"], "status": doc["status"], "reason": doc.get("reason")}
        ]
        frames.append(pd.DataFrame([{**extra, **r} for r in rows]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_quality(paths: list[str]) -> pd.DataFrame:
    rows = []
    for path in paths:
        doc = read_result(path)
        base = {**_cell(doc["provenance"]), "status": doc["status"], "reason": doc.get("reason")}
        rows += [{**base, **s} for s in doc.get("scores", [])] or [base]
    return pd.DataFrame(rows)


def load_quant(paths: list[str], config: dict | None = None) -> pd.DataFrame:
    rows = []
    for path in paths:
        doc = read_result(path, config)
        row = {
            "model": doc["model"]["name"],
            "quantization": doc["provenance"]["quantization"],
            "method": doc["method"],
            "format": doc["format"],
            "status": doc.get("status", Status.OK),
            "reason": doc.get("reason"),
        }
        if row["status"] == Status.OK:
            row.update(
                scheme=doc.get("scheme"),
                weight_bits=doc.get("weight_bits"),
                group_size=doc.get("group_size"),
                size_mb=doc["size_bytes"] / 2**20 if doc["size_bytes"] else None,
                compression_ratio=doc["compression_ratio"],
                quantize_s=doc["quantize_seconds"],
            )
        rows.append(row)
    return pd.DataFrame(rows)


SPEED_COLUMNS = [
    "engine",
    "model",
    "input_len",
    "quantization",
    "speed_tok_s",
    "decode_tok_s",
    "memory_mb",
    "memory_method",
    "repeats",
    "cached_tokens",
]


def cache_cell(group: pd.DataFrame) -> str:
    """The engine's cached prompt tokens over a cell's requests, as a table shows them: the
    total (0 for a cache-free cell), a hit marked with how many requests it touched, or
    "not reported" where the engine gave no count. Rows with hits are never averaged in
    silently: this column travels with every figure built from them."""
    if "cached_tokens" not in group:
        return "not reported"
    counts = group["cached_tokens"]
    hits = _cache_hits(group)
    total = int(counts.fillna(0).sum())
    text = f"{total}" if counts.notna().any() else "not reported"
    if counts.isna().any() and counts.notna().any():
        text += f" ({int(counts.isna().sum())} not reported)"
    if hits:
        text = f"CACHE HIT: {total} tokens in {hits} of {len(group)} requests"
    return text


def mean_with_spread(mean: float, sd: float, repeats: int) -> str:
    """Mean ± sample standard deviation over repeats; one repeat has no spread to show (a
    "± 0.00" would claim a measured one)."""
    return f"{mean:.2f} ± {sd:.2f}" if repeats > 1 else f"{mean:.2f}"


def speed_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Rows model x input length x quantization per engine; speed (mean ± std over repeats) and
    peak memory. A cell with no successful repeat shows its status and reason instead."""
    single = cells[cells["scenario"] == "single"]
    out = []
    for key, group in single.groupby(CELL_KEYS + ["input_len"], sort=True):
        ok = group[group["status"] == Status.OK]
        row = dict(zip(CELL_KEYS + ["input_len"], key))
        if ok.empty:
            first = group.iloc[0]
            row["speed_tok_s"] = _status_or(first, "")
            row["memory_mb"] = ""
        else:
            (summary,) = summarize_lengths(group.to_dict("records"))
            speed = summary.spread("speed_tok_s")
            row["speed_tok_s"] = mean_with_spread(speed.mean, speed.std, summary.n_ok)
            row["decode_tok_s"] = f"{summary.spread('decode_speed_tok_s').mean:.2f}"
            row["memory_mb"] = f"{summary.peak_mem_mb_max:.2f}"
            row["memory_method"] = summary.mem_method
            row["repeats"] = summary.n_ok
            if _cache_hits(ok):
                row["speed_tok_s"] += " (cache hit)"
        row["cached_tokens"] = cache_cell(group)
        out.append(row)
    return pd.DataFrame(out).reindex(columns=SPEED_COLUMNS).fillna("")


def _cache_hits(rows: pd.DataFrame) -> int:
    """Requests with a cache hit: batch-1 rows flag their own (`cache_hit`), load rows count
    theirs (`cache_hits`)."""
    hit = rows.get("cache_hit", pd.Series(False, rows.index)).fillna(False).astype(bool).sum()
    return int(hit + rows.get("cache_hits", pd.Series(0, rows.index)).fillna(0).sum())


def short_reason(reason) -> str:
    """The first line of a failure's reason, for a table cell (the result file keeps it all)."""
    return str(reason or "").strip().splitlines()[0][:200] if reason else ""


def _status_or(row: pd.Series, value: str) -> str:
    if row["status"] == Status.OK:
        return value
    text = f"{row['status']}: {short_reason(row.get('reason'))}"
    log = row.get("log")
    if isinstance(log, str) and log and log not in text:
        text += f" (log: {log})"
    return text


def scenario_table(cells: pd.DataFrame, scenario: str, columns: list[str]) -> pd.DataFrame:
    """One row per measured row of a scenario (serving: one per cell; batch: per batch size)."""
    rows = cells[cells["scenario"] == scenario]
    if rows.empty:
        return pd.DataFrame(columns=CELL_KEYS + columns)
    table = rows.reindex(columns=CELL_KEYS + columns + ["reason"]).copy()
    for col in columns:
        if pd.api.types.is_float_dtype(table[col]):
            table[col] = table[col].round(2)
    table.loc[table["status"] != Status.OK, "status"] = [
        _status_or(r, "") for _, r in table[table["status"] != Status.OK].iterrows()
    ]
    if "cached_tokens" in columns:  # a load run that hit the cache says so in its status
        hit = rows.get("cache_hits", pd.Series(0, rows.index)).fillna(0) > 0
        table.loc[hit, "status"] = table.loc[hit, "status"].astype(str) + " (cache hit)"
        if "cached_tokens" in rows:
            table["cached_tokens"] = rows["cached_tokens"].map(
                lambda c: "not reported" if pd.isna(c) else int(c)
            )
    return table.drop(columns="reason").fillna("")


# The workload of a serving run, and how much of it completed.
WORKLOAD_COLUMNS = [
    "request_rate",
    "max_concurrency",
    "num_prompts",
    "input_len",
    "output_len",
    "completed",
]
SERVING_COLUMNS = [
    "status",
    *WORKLOAD_COLUMNS,
    "failed",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "ttft_mean_ms",
    "ttft_median_ms",
    "ttft_p90_ms",
    "ttft_p99_ms",
    "tpot_mean_ms",
    "tpot_p90_ms",
    "itl_mean_ms",
    "itl_p99_ms",
    "e2el_mean_ms",
    "e2el_p90_ms",
    "dispatch_delay_mean_ms",
    "goodput",
    "cached_tokens",
    "cache_hits",
]
CLIENT_COLUMNS = [
    "client",
    "status",
    *WORKLOAD_COLUMNS,
    "request_throughput",
    "output_throughput",
    "ttft_mean_ms",
    "ttft_median_ms",
    "ttft_p99_ms",
    "tpot_mean_ms",
    "tpot_median_ms",
    "tpot_p99_ms",
    "itl_mean_ms",
    "itl_p99_ms",
    "e2el_mean_ms",
    "e2el_median_ms",
    "cached_tokens",
    "cache_hits",
]
BATCH_COLUMNS = [
    "batch_size",
    "input_len",
    "output_len",
    "status",
    "latency_s",
    "prefill_s",
    "input_throughput_tok_s",
    "output_throughput_tok_s",
    "itl_ms",
    "peak_mem_mb",
    "mem_method",
    "energy_j_per_output_token",
    "cached_tokens",
    "cache_hits",
]


def _fact(facts: dict, key: str):
    return (facts.get(key) or {}).get("value")


def _scenario_docs(facts_path: str) -> dict:
    """The scenario result files beside a cell's engine.json that exist and can be read."""
    docs = {}
    for path in sorted(Path(facts_path).parent.glob("*.json")):
        if path.name == "engine.json":
            continue
        try:
            doc = read_result(str(path))
        except Exception:  # noqa: BLE001 - the scenario tables report unreadable files
            continue
        if doc.get("status") != Status.SKIPPED:
            docs[doc.get("scenario", path.stem)] = doc
    return docs


def engine_table(paths: list[str], cells: pd.DataFrame) -> pd.DataFrame:
    """Per cell: time spent starting vs measuring, KV-cache capacity, the memory the engine
    reports (weights, KV pool) and its processes hold (NVML per process; the device-wide figure
    named apart), warm-up requests, the prefix cache's state, and energy per output token of
    each scenario with the idle part of the measuring time apart."""
    rows = []
    for path in paths:
        doc = read_result(path)
        startup = doc.get("startup") or {}
        energy = doc.get("energy") or {}
        cache = doc.get("prefix_cache") or {}
        row = {
            **_cell(doc["provenance"]),
            "status": doc["status"],
            "startup_s": _fact(startup, "startup_s"),
            "measure_s": doc.get("measure_s"),
            "kv_cache_tokens": _fact(startup, "kv_cache_tokens"),
            "kv_cache_gib": _fact(startup, "kv_cache_gib")
            or _fact(startup, "available_kv_cache_gib"),
            "max_concurrency": _fact(startup, "max_concurrency"),
            "weights_gib": _fact(startup, "weights_gib"),
            "process_gpu_memory_mb": _fact(startup, "process_gpu_memory_mb"),
            "device_gpu_memory_used_mb": _fact(startup, "device_gpu_memory_used_mb"),
            "prefix_caching": cache.get("how"),
            "energy_measuring_j": energy.get("total_j"),
            "energy_idle_j": energy.get("idle_j"),
            "idle_s": energy.get("idle_s"),
            "reason": short_reason(doc.get("reason")),
            "log": doc.get("log"),
        }
        warmups = []
        for name, scenario in _scenario_docs(path).items():
            e = scenario.get("energy") or {}
            if e.get("j_per_output_token") is not None:
                row[f"j_per_token_{name}"] = e["j_per_output_token"]
            if scenario.get("warmup_requests") is not None:
                warmups.append(f"{name} {scenario['warmup_requests']}")
        row["warmup_requests"] = ", ".join(warmups)
        rows.append(row)
    table = pd.DataFrame(rows)
    extra = sorted(c for c in table.columns if c.startswith("j_per_token_"))
    return table.reindex(columns=ENGINE_COLUMNS[:-2] + extra + ENGINE_COLUMNS[-2:])


ENGINE_COLUMNS = CELL_KEYS + [
    "status",
    "startup_s",
    "measure_s",
    "kv_cache_tokens",
    "kv_cache_gib",
    "max_concurrency",
    "weights_gib",
    "process_gpu_memory_mb",
    "device_gpu_memory_used_mb",
    "prefix_caching",
    "warmup_requests",
    "energy_measuring_j",
    "energy_idle_j",
    "idle_s",
    "reason",
    "log",
]


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


# The sweep scenario's summary row per cell (quantbench/sweep.py).
CAPACITY_COLUMNS = [
    "status",
    "slo",
    "saturation_request_throughput",
    "saturation_output_throughput",
    "max_rate_under_slo",
    "request_throughput_at_slo",
    "output_throughput_at_slo",
    "max_concurrency_under_slo",
    "saturation_max_running",
    "workload",
    "input_len",
    "output_len",
    "points",
    "cached_tokens",
    "cache_hits",
]


def capacity_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per engine, model and quantization: the saturation throughput (requests/s, output
    tokens/s), the highest request rate that met the SLO and its throughput, the SLO itself.
    A cell whose sweep failed shows its status; one where no rate met the SLO says so."""
    rows = cells[cells["scenario"] == "sweep"] if "scenario" in cells else cells.iloc[:0]
    if "point" in rows:
        rows = rows[rows["point"].isna() | (rows["point"] == "summary")]
    table = scenario_table(rows, "sweep", CAPACITY_COLUMNS)
    if len(table) and "max_rate_under_slo" in rows:
        none_met = (rows["status"] == Status.OK) & rows["max_rate_under_slo"].isna()
        none_met &= rows["slo"].fillna("none") != "none"
        table["max_rate_under_slo"] = table["max_rate_under_slo"].astype(object)
        table.loc[none_met.to_numpy(), "max_rate_under_slo"] = "no rate met the SLO"
    keys = ["engine", "model", "quantization"]
    return table[keys + CAPACITY_COLUMNS].sort_values(keys).reset_index(drop=True)


def plot_capacity(cells: pd.DataFrame, path: Path) -> None:
    """Throughput against latency per engine and model, one curve per quantization: output
    tokens/s of each sweep point (x) against its p50 (solid) and p99 (dashed) TTFT and TPOT,
    the SLO as a grey line. Written even without a sweep (a panel that says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = cells[cells["scenario"] == "sweep"] if "scenario" in cells else cells.iloc[:0]
    if "point" in sweep:
        points = sweep[(sweep["status"] == Status.OK) & (sweep["point"] != "summary")]
        points = points[points["phase"] != "concurrency"]
        summary = sweep[sweep["point"] == "summary"]
    else:
        points = summary = sweep.iloc[:0]
    groups = list(points.groupby(["engine", "model"])) if len(points) else []
    fig, axes = plt.subplots(
        max(1, len(groups)), 2, figsize=(12, 4.2 * max(1, len(groups))), squeeze=False
    )
    if not groups:
        for ax in axes[0]:
            ax.text(0.5, 0.5, "no sweep measured", ha="center", va="center", transform=ax.transAxes)
    for row, ((engine, model), g) in zip(axes, groups):
        for i, (quant, q) in enumerate(g.groupby("quantization")):
            q = q.sort_values("output_throughput")
            for ax, metric in zip(row, ("ttft", "tpot")):
                for stat, style in (("median", "-"), ("p99", "--")):
                    ax.plot(
                        q["output_throughput"],
                        q[f"{metric}_{stat}_ms"],
                        style,
                        marker="o",
                        ms=4,
                        color=f"C{i}",
                        label=f"{quant} {'p50' if stat == 'median' else stat}",
                    )
        mine = summary[(summary["engine"] == engine) & (summary["model"] == model)]
        for ax, metric in zip(row, ("ttft", "tpot")):
            limit = mine.get(f"slo_{metric}_ms", pd.Series(dtype=float)).dropna()
            if len(limit):
                ax.axhline(float(limit.iloc[0]), color="0.5", lw=1, ls=":", label="SLO")
            ax.set_yscale("log")
            ax.set_xlabel("output tokens/s")
            ax.set_ylabel(f"{metric.upper()} (ms)")
            ax.set_title(f"{model} · {engine} · {metric.upper()}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)


def write_table(df: pd.DataFrame, stem: Path, title: str) -> None:
    """CSV, Markdown and HTML of one table."""
    atomic_write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    md = f"# {title}\n\n" + (df.to_markdown(index=False) if not df.empty else "_no rows_") + "\n"
    atomic_write_text(stem.with_suffix(".md"), md)
    if "flags" in df.columns and len(df):
        # A flag's full text repeats on every row it applies to: short codes, a legend below.
        from quantbench.report_html import FlagCodes, table_html

        codes = FlagCodes()
        html = table_html(df, codes) + codes.legend()
    else:
        html = df.to_html(index=False, na_rep="", border=0, classes="qb-table")
    atomic_write_text(stem.with_suffix(".html"), f"<h2>{title}</h2>\n{html}\n")


def build_report(
    bench: list[str],
    facts: list[str],
    quality: list[str],
    quant: list[str],
    out: Path,
    samples: list[str] = (),
    config: dict | None = None,
) -> dict:
    """The report of every planned cell into `out`: built in a temporary directory beside it
    and swapped in only when complete, so a failure leaves the previous report whole."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.new-"))
    try:
        staging.chmod(0o755)
        samples = [p for p in samples if Path(p).exists()]
        counts = _write_report(bench, facts, quality, quant, staging, samples, config)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        for extra in out.iterdir():  # files of other rules (published.*, an HTML report) stay
            if not (staging / extra.name).exists():
                extra.rename(staging / extra.name)
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return counts


def _write_report(bench, facts, quality, quant, out: Path, samples, config) -> dict:
    cells = load_bench(bench, config)
    atomic_write_text(out / REQUESTS_CSV, cells.to_csv(index=False))
    speed = speed_table(cells)
    write_table(speed, out / "speed", "Speed (tokens/s) and peak memory (MB), batch 1")
    write_table(
        scenario_table(cells, "serving", SERVING_COLUMNS),
        out / "serving",
        "Online serving (vLLM metric definitions; latencies in ms)",
    )
    write_table(scenario_table(cells, "batch", BATCH_COLUMNS), out / "batch", "Fixed batches")
    write_table(
        scenario_table(cells, "engine_client", CLIENT_COLUMNS),
        out / "clients",
        "The project's client and the engine's own on the same server and workload",
    )
    write_table(engine_table(facts, cells), out / "engine", "Engine facts")
    write_table(
        capacity_table(cells),
        out / "capacity",
        "Serving capacity: saturation throughput and the highest rate under the SLO",
    )
    plot_capacity(cells, out / "capacity_curves.png")
    from quantbench.quality.report import build_quality_report

    # quality.* (with flags), gate.* and frontier.*: see quantbench/quality/report.py
    build_quality_report(quality, samples, cells, engine_table(facts, cells), config or {}, out)
    write_table(load_quant(quant, config), out / "checkpoints", "Checkpoints")
    plot_speed(cells, out / "speed_vs_input.png")
    from quantbench.report_html import write_index

    write_index(out)  # index.html: the page a person opens first
    return {"cells": len(cells), "speed_rows": len(speed)}
