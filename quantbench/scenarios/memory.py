"""Batch-1 memory without the decode's time: per input length, what an in-process engine holds
at the last token of an `output_len`-token generation (the published Transformers memory
column), reached in a few forward passes instead of one per token (the engine's
`generation_memory`). For the memory cells whose speed is not asked for: quantized formats on a
kernel other than the published one, and models whose token-by-token decode would take hours
of GPU time on a launch-bound host. No speed is measured."""

from __future__ import annotations

import sys

from tqdm import tqdm

from quantbench.bench import failed_request, too_long_reason
from quantbench.scenarios import (
    POSITIVE_INT,
    Scenario,
    Table,
    input_lengths_setting,
    register_scenario,
)
from quantbench.status import Status

MEMORY_COLUMNS = [
    "input_len",
    "output_len",
    "status",
    "end_mem_mb",
    "prefill_peak_mem_mb",
    "kv_tokens",
    "mem_method",
    "weights_load_path",
]


def run_memory(engine, prompts, cfg: dict, progress: bool = True) -> tuple[list, list, dict]:
    """One row per input length (ascending); a failing length is recorded and the next one
    runs. Repeats would only repeat the allocator's exact count: there is one per length."""
    out_len, chunk, seed = cfg["output_len"], cfg["append_chunk"], cfg.get("seed", 0)
    max_pos = engine.max_positions
    rows = []
    lengths = sorted(cfg["input_lengths"])
    for input_len in tqdm(lengths, desc="memory", disable=not progress, file=sys.__stderr__):
        base = {
            "scenario": "memory",
            "input_len": input_len,
            "output_len": out_len,
            "batch_size": 1,
            "repeat": 0,
        }
        reason = too_long_reason(input_len, out_len, max_pos)
        if reason:
            rows.append({**base, "status": Status.UNSUPPORTED, "reason": reason})
            continue
        try:
            ids = prompts.prompt(input_len, seed, "memory", input_len)
            figures = engine.generation_memory(ids, out_len, chunk)
        except Exception as err:  # noqa: BLE001 - any failure is this length's result
            rows.append(failed_request(engine, base, err))
            continue
        expected = input_len + out_len - 1
        if figures["kv_tokens"] != expected:  # the cache is not generate()'s: no figure
            reason = f"KV cache holds {figures['kv_tokens']} tokens, expected {expected}"
            rows.append({**base, "status": Status.FAILED, "reason": reason})
            continue
        rows.append({**base, "status": Status.OK, **figures})
    return rows, [], {"warmup_requests": 0}


@register_scenario("memory")
class Memory(Scenario):
    description = (
        "batch-1 memory at the last token of an output_len generation, without timing it "
        "(in-process engines)"
    )
    requires = ("generation_memory",)
    settings = {
        "input_lengths": input_lengths_setting([1, 6144, 14336, 30720]),
        "output_len": {**POSITIVE_INT, "default": 2048},
        "append_chunk": {
            **POSITIVE_INT,
            "default": 256,
            "description": "generated tokens appended to the KV cache per forward pass",
        },
        "seed": {"type": "integer", "default": 0},
    }
    tables = (
        Table(
            "memory",
            "Memory at the last generated token, batch 1 (no timing)",
            "What the engine holds at the last of `output_len` generated tokens "
            "(`end_mem_mb`: torch.cuda.memory_allocated with the KV cache of prompt + "
            "output_len - 1 tokens alive, as in generate(); the published Transformers column) "
            "and prefill's peak, reached by appending the generated tokens' cache in chunks. "
            "No speed: the `speed` table has the timed runs.",
            columns=tuple(MEMORY_COLUMNS),
        ),
    )

    def run(self, engine, prompts, settings, progress=True):
        return run_memory(engine, prompts, settings, progress)

    def failed_rows(self, settings, status, reason):
        base = {"scenario": self.name, "status": status, "reason": reason}
        out_len = settings["output_len"]
        return [{**base, "input_len": n, "output_len": out_len} for n in settings["input_lengths"]]
