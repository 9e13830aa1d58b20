"""Fixed batches: B requests of `input_len` sent together, as in SGLang's one-batch report,
with the GPU energy counter read around each batch."""

from __future__ import annotations

import sys

from tqdm import tqdm

from quantbench import gpu
from quantbench.bench import WARMUP_OUTPUT_LEN, batch_row
from quantbench.scenarios import POSITIVE_INT, Scenario, Table, register_scenario

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


def _energy(start_j: float | None, output_tokens: int) -> dict:
    """Joules since `start_j` on the GPUs' counter, and per output token; empty without one."""
    joules = gpu.joules_since(start_j)
    if joules is None:
        return {}
    return {"energy_j": joules, "energy_j_per_output_token": joules / max(output_tokens, 1)}


def run_batch(engine, prompts, cfg: dict, progress: bool = True) -> tuple[list, list, dict]:
    """Latency = last token of the batch; prefill = last first token; input throughput =
    B x input_len / prefill; output throughput = B x output_len / (latency - prefill);
    ITL = median gap between tokens. Each batch size runs once unmeasured first (its own
    prompts, `WARMUP_OUTPUT_LEN` tokens); the GPU energy counter is read around each batch."""
    rows, raw, warmups = [], [], 0
    n, out_len, seed = cfg["input_len"], cfg["output_len"], cfg["seed"]
    for b in tqdm(cfg["batch_sizes"], desc="batch", disable=not progress, file=sys.__stderr__):
        if cfg.get("warmup_per_shape", True):
            warm = [prompts.prompt(n, seed, "batch-warmup", b, i) for i in range(b)]
            engine.run_requests(warm, min(WARMUP_OUTPUT_LEN, out_len), concurrency=b)
            warmups += b
        batch = [prompts.prompt(n, seed, "batch", b, i) for i in range(b)]
        base = {"scenario": "batch", "batch_size": b, "input_len": n, "output_len": out_len}
        energy_start = gpu.energy_j()
        records = engine.run_requests(batch, out_len, concurrency=b)
        energy = _energy(energy_start, b * out_len)
        raw += [{**base, **r.to_dict()} for r in records]
        rows.append(
            {**batch_row(records, base, engine.measure_memory(b * (n + out_len))), **energy}
        )
    return rows, raw, {"warmup_requests": warmups}


@register_scenario("batch")
class Batch(Scenario):
    requires = ("requests",)
    settings = {
        "batch_sizes": {
            "type": "array",
            "items": POSITIVE_INT,
            "minItems": 1,
            "uniqueItems": True,
            "default": [1, 2, 4, 8, 16, 32, 64],
        },
        "input_len": {**POSITIVE_INT, "default": 4096},
        "output_len": {**POSITIVE_INT, "default": 512},
        "warmup_per_shape": {
            "type": "boolean",
            "default": True,
            "description": "one unmeasured batch of each size first",
        },
        "seed": {"type": "integer", "default": 0},
    }
    tables = (
        Table(
            "batch",
            "Fixed batches",
            "Fixed batches sent together: latency to the batch's last token, input throughput "
            "= batch × input length / prefill time, output throughput = batch × output length "
            "/ decode time, median ITL.",
            columns=tuple(BATCH_COLUMNS),
        ),
    )

    def run(self, engine, prompts, settings, progress=True):
        return run_batch(engine, prompts, settings, progress)

    def failed_rows(self, settings, status, reason):
        base = {"scenario": self.name, "status": status, "reason": reason}
        n = settings["input_len"]
        return [{**base, "batch_size": b, "input_len": n} for b in settings["batch_sizes"]]
