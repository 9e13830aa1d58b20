"""Aggregate result files into the report: CSV of every measured row, each scenario's tables
and plots (declared by its module, quantbench.scenarios), the engine facts, the quality part
(quantbench.quality.report) and the checkpoints, and the index page."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from quantbench.io import atomic_write_text
from quantbench.quality.report import build_quality_report
from quantbench.report_html import write_index
from quantbench.results import read_result
from quantbench.scenarios import report_plots, report_tables
from quantbench.status import Status
from quantbench.tables import CELL_KEYS, cell_of, short_reason, write_table

# Every measured request row of every cell (older reports named it cells.csv).
REQUESTS_CSV = "requests.csv"


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
            **cell_of(prov),
            "engine_version": prov["engine_version"],
            "device_name": prov["device_name"],
            # GPUs the engine ran on: the published tables key a cell by it as well
            "tensor_parallel_size": _tensor_parallel_size(prov),
            "file_status": doc["status"],
            "log": doc.get("log"),
        }
        rows = doc["rows"] or [
            {"scenario": doc["scenario"], "status": doc["status"], "reason": doc.get("reason")}
        ]
        frames.append(pd.DataFrame([{**extra, **r} for r in rows]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _tensor_parallel_size(prov: dict) -> int | None:
    engine = (prov.get("settings") or {}).get("engine") or {}
    return engine.get("tensor_parallel_size", 1) if engine else None


def load_quant(paths: list[str], config: dict | None = None) -> pd.DataFrame:
    rows = []
    for path in paths:
        doc = read_result(path, config)
        row = {
            "model": doc["model"]["name"],
            "quantization": doc["provenance"]["quantization"],
            "method": doc["method"],
            "format": doc["format"],
            "status": doc.get("status", "ok"),
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


# quantbench/engines/transformers/weights.py: packed, decompressed, unquantized or unclear
WEIGHT_FORM_COLUMNS = (
    "weights_load_path",
    "weights_held_gib",
    "checkpoint_gib",
    "dense_gib",
    "linear_classes",
)


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
            **cell_of(doc["provenance"]),
            "status": doc["status"],
            "startup_s": _fact(startup, "startup_s"),
            "compile_cache_files": _fact(startup, "compile_cache_files"),
            "measure_s": doc.get("measure_s"),
            "session_s": doc.get("session_s"),
            "kv_cache_tokens": _fact(startup, "kv_cache_tokens"),
            "kv_cache_gib": _fact(startup, "kv_cache_gib")
            or _fact(startup, "available_kv_cache_gib"),
            "max_concurrency": _fact(startup, "max_concurrency"),
            "weights_gib": _fact(startup, "weights_gib"),
            # In-process Transformers: in which form the weights sat and the sizes that tell it
            **{key: _fact(startup, key) for key in WEIGHT_FORM_COLUMNS},
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
    if len(table):
        table = pd.concat([table, pd.DataFrame([_sweep_share(table)])], ignore_index=True)
        table["measuring_share"] = table["measure_s"] / table["session_s"]
    extra = sorted(c for c in table.columns if c.startswith("j_per_token_"))
    return table.reindex(columns=ENGINE_COLUMNS[:-2] + extra + ENGINE_COLUMNS[-2:])


def _sweep_share(table: pd.DataFrame) -> dict:
    """The whole sweep's row: the engines' session time (start-up, measuring, shutdown) and the
    part of it spent measuring, over every cell that held its engine."""
    held = table.dropna(subset=["session_s"])
    return {
        "model": f"all {len(held)} cells",
        "quantization": "",
        "engine": "",
        "status": "",
        "session_s": held["session_s"].sum(min_count=1),
        "measure_s": held["measure_s"].sum(min_count=1),
    }


ENGINE_COLUMNS = CELL_KEYS + [
    "status",
    "startup_s",
    "compile_cache_files",
    "measure_s",
    "session_s",
    "measuring_share",
    "kv_cache_tokens",
    "kv_cache_gib",
    "max_concurrency",
    "weights_gib",
    *WEIGHT_FORM_COLUMNS,
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
    counts = {"cells": len(cells)}
    for scenario, table in report_tables():
        frame = scenario.table(table, cells)
        write_table(frame, out / table.name, table.title)
        counts[f"{table.name}_rows"] = len(frame)
    for _, plot in report_plots():
        plot.draw(cells, out / plot.file)
    engine = engine_table(facts, cells)
    write_table(engine, out / "engine", "Engine facts")
    # quality.* (with flags), gate.* and frontier.*: see quantbench/quality/report.py
    build_quality_report(quality, samples, cells, engine, config or {}, out)
    write_table(load_quant(quant, config), out / "checkpoints", "Checkpoints")
    write_index(out)  # index.html: the page a person opens first
    return counts
