"""Issue 21: the `memory` scenario reaches the memory a batch-1 generate() holds at its last token
without decoding token by token. What makes its figure generate()'s is that the KV cache ends
with the same tensors; that is checked here against a real generate() on a tiny Qwen3 (CPU).
The allocator's own count is CUDA's (docs/measurement.md); the whole-workflow run is in
tests/test_e2e.py."""

import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from quantbench.client.prompts import PromptSource
from quantbench.engines.transformers import TransformersEngine
from quantbench.engines.transformers.engine import fill_generation_cache
from quantbench.engines.vllm import VLLMEngine
from quantbench.models import materialize
from quantbench.published import comparison_table, published_comparison
from quantbench.scenarios import get_scenario, unsupported_reason
from quantbench.scenarios.memory import run_memory
from quantbench.status import MemorySource, Status


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tiny = materialize("tiny", {"source": "tiny", "seed": 0}, tmp_path_factory.mktemp("m"))
    eng = TransformersEngine({"device": "cpu", "dtype": "float32"})
    eng.load(tiny["path"], has_weights=True)
    eng.prompts = lambda: PromptSource(AutoTokenizer.from_pretrained(tiny["path"]))
    yield eng
    eng.close()


def cache_tensors(cache) -> list[tuple]:
    return [(tuple(x.shape), x.dtype) for layer in cache.layers for x in (layer.keys, layer.values)]


@pytest.mark.parametrize(
    ("prompt_len", "output_len", "chunk"), [(37, 50, 16), (5, 9, 64), (8, 1, 4)]
)
def test_the_cache_ends_as_generate_leaves_it(engine, prompt_len, output_len, chunk):
    ids = torch.randint(0, engine.model.config.vocab_size, (1, prompt_len))
    with torch.inference_mode():
        generated = engine.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=output_len,
            min_new_tokens=output_len,
            do_sample=False,
            return_dict_in_generate=True,
            pad_token_id=0,
        )
        filled = fill_generation_cache(engine.model, ids, output_len, chunk)
    assert generated.sequences.shape[1] == prompt_len + output_len
    # generate() caches every token but the last one it emits
    assert filled.get_seq_length() == prompt_len + output_len - 1
    assert cache_tensors(filled) == cache_tensors(generated.past_key_values)


def test_rows_per_length_with_the_cache_they_held(engine):
    max_pos = engine.max_positions
    cfg = {"input_lengths": [64, 1, max_pos], "output_len": 12, "append_chunk": 5, "seed": 0}
    rows, raw, extra = run_memory(engine, engine.prompts(), cfg, progress=False)
    assert [r["input_len"] for r in rows] == [1, 64, max_pos]  # ascending
    ok = [r for r in rows if r["status"] == Status.OK]
    assert [r["kv_tokens"] for r in ok] == [1 + 11, 64 + 11]
    assert all(r["cached_tokens"] == 0 and r["weights_load_path"] for r in ok)
    # off CUDA: the process's peak, named so; no end-of-generation figure is claimed
    assert all(
        r["mem_method"] != MemorySource.TORCH_ALLOCATED and "end_mem_mb" not in r for r in ok
    )
    assert (
        rows[-1]["status"] == Status.UNSUPPORTED and "max_position_embeddings" in rows[-1]["reason"]
    )
    assert raw == [] and extra == {"warmup_requests": 0}


def test_a_failing_length_is_recorded_and_the_next_runs(engine, monkeypatch):
    real = engine.generation_memory

    def fail_once(ids, output_len, chunk):
        if len(ids) == 1:
            raise RuntimeError("CUDA out of memory")
        return real(ids, output_len, chunk)

    monkeypatch.setattr(engine, "generation_memory", fail_once)
    cfg = {"input_lengths": [1, 8], "output_len": 4, "append_chunk": 2}
    rows, _, _ = run_memory(engine, engine.prompts(), cfg, progress=False)
    assert rows[0]["status"] == Status.FAILED and rows[0]["reason"].startswith("OOM: ")
    assert rows[1]["status"] == Status.OK and rows[1]["kv_tokens"] == 8 + 3


def test_only_engines_that_implement_it_run_it():
    assert unsupported_reason(TransformersEngine, "memory") is None
    vllm = VLLMEngine({})
    assert "generation_memory" in unsupported_reason(vllm, "memory")
    failed = get_scenario("memory").failed_rows(
        {"input_lengths": [1, 6144], "output_len": 2048}, Status.FAILED, "server exit 1"
    )
    assert [(r["input_len"], r["status"]) for r in failed] == [(1, "failed"), (6144, "failed")]


def test_memory_rows_reach_the_published_comparison_without_a_speed():
    """A memory-only cell beside a timed one: its last-token memory is compared with the
    published column, its speed is left empty (not zero), the timed cell keeps its speed."""
    base = {"engine": "transformers", "model": "Qwen3-0.6B", "output_len": 2048,
            "status": Status.OK, "mem_method": MemorySource.TORCH_ALLOCATED,
            "device_name": "NVIDIA H100 80GB HBM3", "weights_load_path": "unquantized"}  # fmt: skip
    rows = [
        {**base, "scenario": "memory", "quantization": "fp8", "input_len": 6144,
         "end_mem_mb": 1500.0, "cached_tokens": 0},
        *({**base, "scenario": "single", "quantization": "bf16", "input_len": 6144,
           "speed_tok_s": s, "decode_speed_tok_s": s / 4, "peak_mem_mb": 2100.0,
           "end_mem_mb": 2066.0, "cached_tokens": 0} for s in (50.0, 52.0)),
    ]  # fmt: skip
    config = {
        "models": {"Qwen3-0.6B": {"reference_name": "Qwen3-0.6B"}},
        "quantizations": {"bf16": {"reference_quant": "BF16"}, "fp8": {"reference_quant": "FP8"}},
        "engines": {"transformers": {}},
    }
    table = comparison_table(published_comparison(pd.DataFrame(rows), config))
    fp8 = table[table["quantization"] == "fp8"].iloc[0]
    bf16 = table[table["quantization"] == "bf16"].iloc[0]
    assert fp8["memory_end"] == "1500.0" and fp8["memory_end_delta"] != ""
    assert fp8["speed_ratio"] == "" and fp8["repeats"] == 0 and fp8["memory_mb"] == ""
    assert bf16["speed"].startswith("51.00") and bf16["repeats"] == 2
