"""Online serving: `num_prompts` requests at a (Poisson/gamma) request rate and/or a
concurrency limit, measured by the project's streaming client; one row of vLLM-defined
metrics per cell."""

from __future__ import annotations

import numpy as np

from quantbench.bench import _random_lengths, _run_load, load_row
from quantbench.scenarios import POSITIVE_INT, Scenario, Table, register_scenario
from quantbench.tables import WORKLOAD_COLUMNS

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
# A load run's keys, shared with the engine_client scenario.
LOAD_SETTINGS = {
    "request_rate": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": 10},
    "max_concurrency": {"type": ["integer", "null"], "minimum": 1, "default": None},
    "num_prompts": {**POSITIVE_INT, "default": 200},
    "input_len": {**POSITIVE_INT, "default": 512},
    "output_len": {**POSITIVE_INT, "default": 128},
}


def run_serving(engine, prompts, cfg: dict, progress: bool = True) -> tuple[list, list, dict]:
    """One summary row of vLLM-defined metrics, plus the raw records."""
    rng = np.random.default_rng(cfg["seed"])
    lengths = _random_lengths(cfg["input_len"], cfg["range_ratio"], cfg["num_prompts"], rng)
    records, warmups = _run_load(engine, prompts, lengths, cfg, progress, "serving")
    rows = [load_row(records, cfg, scenario="serving")]
    return rows, [r.to_dict() for r in records], {"warmup_requests": warmups}


@register_scenario("serving")
class Serving(Scenario):
    requires = ("requests",)
    settings = {
        **LOAD_SETTINGS,
        "range_ratio": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.0},
        "burstiness": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
        "warmup": {
            "type": "integer",
            "minimum": 0,
            "default": 2,
            "description": "unmeasured requests at the load's first lengths, each its own prompt",
        },
        "shared_prefix_tokens": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "every prompt starts with one shared prefix of this many tokens (a "
            "production-like cache workload); cached tokens up to it are expected, beyond it "
            "flagged",
        },
        "seed": {"type": "integer", "default": 0},
        "slo_ms": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {k: {"type": "number"} for k in ("ttft", "tpot", "e2el")},
        },
    }
    tables = (
        Table(
            "serving",
            "Online serving (vLLM metric definitions; latencies in ms)",
            "Online serving at a request rate and/or concurrency, measured by quantbench's "
            "streaming client from raw per-request records: TTFT (send to first content "
            "chunk), TPOT (excluding the first token; GuideLLM/AIPerf call this ITL), ITL (gaps "
            "between chunks), end-to-end latency, throughputs and the client's own dispatch "
            "delay (reported apart from latency).",
            columns=tuple(SERVING_COLUMNS),
        ),
    )

    def run(self, engine, prompts, settings, progress=True):
        return run_serving(engine, prompts, settings, progress)
