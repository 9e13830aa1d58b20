"""The `sweep` scenario: serving capacity (saturation, rate and concurrency points, the highest
rate under an SLO), measured by quantbench.sweep; its report is the capacity table and the
throughput-against-latency curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quantbench.io import save_figure
from quantbench.scenarios import POSITIVE_INT, Plot, Scenario, Table, register_scenario
from quantbench.status import Status
from quantbench.tables import scenario_table

# The sweep's summary row per cell.
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


@register_scenario("sweep")
class Sweep(Scenario):
    description = (
        "serving capacity (quantbench/sweep.py): a saturation run at an unbounded rate, then "
        "request rates (listed, or placed between low load and saturation) and concurrencies, "
        "and a bisection for the highest rate whose latency meets slo_ms, as vLLM's serve_sla; "
        "the engine's Prometheus /metrics scraped throughout"
    )
    requires = ("requests",)
    settings = {
        "request_rates": {
            "description": "requests/s of the rate points (Poisson/gamma "
            "arrivals), or auto: `points` rates from low_fraction "
            "to high_fraction of the saturation request rate",
            "oneOf": [
                {"type": "string", "enum": ["auto"]},
                {
                    "type": "array",
                    "items": {"type": "number", "exclusiveMinimum": 0},
                    "uniqueItems": True,
                },
            ],
            "default": "auto",
        },
        "concurrencies": {
            "description": "closed-loop points, each at this many requests in "
            "flight (unbounded rate)",
            "type": "array",
            "items": {**POSITIVE_INT},
            "uniqueItems": True,
            "default": [],
        },
        "points": {
            **POSITIVE_INT,
            "default": 4,
            "description": "auto: rate points between low load and saturation",
        },
        "low_fraction": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 0.1,
            "description": "auto: the lowest point, as a fraction of the saturation request rate",
        },
        "high_fraction": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 0.9,
            "description": "auto: the highest point, as a fraction of the saturation request rate",
        },
        "search_iterations": {
            "type": "integer",
            "minimum": 0,
            "default": 4,
            "description": "bisection steps between the highest rate that met "
            "the SLO and the lowest that did not",
        },
        "tolerance": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 0.05,
            "description": "the search stops when those two rates are within this "
            "fraction of each other",
        },
        "max_concurrency": {
            "type": ["integer", "null"],
            "minimum": 1,
            "default": None,
            "description": "saturation run: most requests in flight (null: all at once)",
        },
        "num_prompts": {
            **POSITIVE_INT,
            "default": 200,
            "description": "measured requests per point (and in the saturation run)",
        },
        "duration_s": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "default": None,
            "description": "a rate point sends rate x duration_s requests (at least "
            "10) instead of num_prompts",
        },
        "input_len": {
            **POSITIVE_INT,
            "default": 512,
            "description": "prompt tokens (random workload); the cap on a prompts file's prompts",
        },
        "output_len": {
            **POSITIVE_INT,
            "default": 128,
            "description": "generated tokens per request (EOS ignored)",
        },
        "range_ratio": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.0,
            "description": "random workload: lengths drawn from ±this fraction around input_len",
        },
        "burstiness": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0,
            "description": "gamma shape of arrival gaps (1: Poisson; large: evenly spaced)",
        },
        "warmup": {
            "type": "integer",
            "minimum": 0,
            "default": 4,
            "description": "unmeasured requests before each point, its own prompts at its shapes",
        },
        "shared_prefix_tokens": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "opt-in shared-prefix workload (random "
            "prompts): every prompt starts with one shared "
            "prefix of this many tokens; cached tokens up "
            "to it are expected",
        },
        "prompts_file": {
            "type": ["string", "null"],
            "default": None,
            "description": "a prompts workload instead of random prompts: JSONL, "
            'one {"prompt": text} or ShareGPT-style '
            '{"conversations": [{"from": "human", "value": text}, '
            "...]} per line (or a JSON list of them; the first turn "
            "is the prompt), tokenized with the model's tokenizer "
            "and cut to input_len tokens, each led by two tokens of "
            "its own so none shares a prefix; "
            "data/prompts/sample.jsonl is a small sample",
        },
        "seed": {"type": "integer", "default": 0, "description": "prompt and arrival seed"},
        "slo_ms": {
            "description": "the latency objective a rate must meet (ms); null drops a limit",
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "ttft": {
                    "type": ["number", "null"],
                    "exclusiveMinimum": 0,
                    "default": 500,
                    "description": "time to first token limit",
                },
                "tpot": {
                    "type": ["number", "null"],
                    "exclusiveMinimum": 0,
                    "default": 50,
                    "description": "time per output token limit",
                },
                "e2el": {
                    "type": ["number", "null"],
                    "exclusiveMinimum": 0,
                    "default": None,
                    "description": "end-to-end latency limit",
                },
            },
        },
        "slo_criterion": {
            "description": "p99: p99 TTFT / TPOT / E2EL within slo_ms; goodput: "
            "at least goodput_share of requests within every limit",
            "type": "string",
            "enum": ["p99", "goodput"],
            "default": "p99",
        },
        "goodput_share": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 0.99,
            "description": "goodput criterion: the share of requests that must meet every limit",
        },
        "metrics_interval_s": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 0.5,
            "description": "how often the engine's Prometheus /metrics is scraped during a point",
        },
    }
    tables = (
        Table(
            "capacity",
            "Serving capacity: saturation throughput and the highest rate under the SLO",
            "Serving capacity per cell (``sweep`` scenario): the saturation throughput of an "
            "unbounded-rate run (requests/s and output tokens/s), and the highest request rate "
            "whose latency met the stated SLO (p99 TTFT and TPOT, or a goodput share), found by "
            "bisection between the rates that met it and those that did not, with that rate's "
            "measured throughput. Every request had its own prompt (no shared prefix); the "
            "cached-token columns prove it.",
            build=capacity_table,
            headline=True,
        ),
    )
    plots = (
        Plot(
            "capacity_curves.png",
            "Throughput against TTFT and TPOT (p50, p99) per quantization (sweep)",
            "Throughput against latency per engine and model, one colour per quantization: each "
            "sweep point's output tokens/s against its p50 (solid) and p99 (dashed) TTFT and "
            "TPOT; the dotted grey line is the SLO.",
            plot_capacity,
        ),
    )

    def run(self, engine, prompts, settings, progress=True):
        from quantbench.sweep import run_sweep

        return run_sweep(engine, prompts, settings, progress)
