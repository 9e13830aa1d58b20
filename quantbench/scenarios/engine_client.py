"""The project's client, then the engine's own benchmark tool (`vllm bench serve`, SGLang's
bench_serving), on the same server with the same fixed-length workload: one row per client,
under the same metric names."""

from __future__ import annotations

from dataclasses import asdict

from quantbench.bench import _run_load, _workload, load_row
from quantbench.scenarios import Scenario, Table, register_scenario
from quantbench.scenarios.serving import LOAD_SETTINGS
from quantbench.status import Status
from quantbench.tables import WORKLOAD_COLUMNS

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


@register_scenario("engine_client")
class EngineClient(Scenario):
    description = (
        "vLLM's `vllm bench serve` / SGLang's bench_serving on the same server, after the "
        "project's client ran the same fixed-length workload: both rows side by side"
    )
    requires = ("requests", "own_client")
    settings = {**LOAD_SETTINGS, "seed": {"type": "integer", "default": 0}}
    tables = (
        Table(
            "clients",
            "The project's client and the engine's own on the same server and workload",
            "The project's streaming client and the engine's own benchmark tool (vLLM's "
            "``vllm bench serve``, SGLang's ``bench_serving``) on the same server and the same "
            "fixed-length workload, one row each under the same metric names.",
            columns=tuple(CLIENT_COLUMNS),
        ),
    )

    def run(self, engine, prompts, settings, progress=True):
        """Our prompts are the run's own (no prefix of any other); the tool draws its own
        random ones."""
        from quantbench.engines.own_client import Workload

        w = Workload.from_config(settings)
        cfg = {**asdict(w), "warmup": 1}  # the schema's defaults are the Workload's
        lengths = [w.input_len] * w.num_prompts
        records, warmups = _run_load(engine, prompts, lengths, cfg, progress, "engine_client")
        ours = load_row(records, cfg, scenario="engine_client", client="quantbench")
        base = {"scenario": "engine_client", **_workload(cfg)}
        try:
            theirs = {**base, **engine.own_client(w), "status": Status.OK}
        except Exception as err:  # noqa: BLE001 - the other client's failure is its row's result
            tool = engine.own_client_tool.name
            theirs = {**base, "client": tool, "status": Status.FAILED, "reason": str(err)[:1500]}
        return [ours, theirs], [r.to_dict() for r in records], {"warmup_requests": warmups}
