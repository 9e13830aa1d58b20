"""Issue 21: in which form a quantized checkpoint's weights sit once the Transformers engine has
loaded it (packed as on disk, or decompressed to the load dtype), measured from the tensors the
model holds and carried to the engine table and every memory figure of the speed table. Tiny
Qwen3 quantized by llm-compressor, on CPU."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from quantbench.engines.transformers import TransformersEngine
from quantbench.engines.transformers.weights import WeightsPathError, decide_path
from quantbench.models import materialize
from quantbench.quant import run_quantization
from quantbench.quant.llmcompressor_method import LLMCompressor
from quantbench.report import engine_table
from quantbench.scenarios.single import run_single, speed_table

CALIBRATION = {"dataset": "data/corpus.txt", "num_samples": 8, "seq_len": 128, "seed": 0}
SCHEMES = {
    "fp8-dynamic": {"scheme": "FP8_DYNAMIC"},
    "w4a16": {"scheme": "W4A16", "algorithm": "gptq"},
}
PROBE = "model.layers.1.mlp.down_proj"  # a quantized layer
GIB = 2**30


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed")
    tiny = materialize("tiny", {"source": "tiny", "seed": 0}, root / "tiny")
    out = {"bf16": tiny["path"]}
    for name, params in SCHEMES.items():
        manifest = run_quantization(
            LLMCompressor(params), tiny, root / name, CALIBRATION, {}, fmt="compressed-tensors"
        )
        out[name] = manifest["path"]
    return out


def tensor_bytes(model) -> int:
    """What the model holds, counted here apart from the engine: its state dict, each tensor once
    (non-persistent buffers such as rotary tables are not in it: a few hundred bytes)."""
    tensors = {t.data_ptr(): t.nbytes for t in model.state_dict(keep_vars=True).values()}
    return sum(tensors.values())


def dense_reference(checkpoints) -> int:
    """The unquantized model loaded in BF16: what every dense weight holds."""
    from transformers import AutoModelForCausalLM

    return tensor_bytes(
        AutoModelForCausalLM.from_pretrained(checkpoints["bf16"], dtype=torch.bfloat16)
    )


def probe_weight(model) -> torch.Tensor:
    layer = model.get_submodule(PROBE)
    return layer.weight if hasattr(layer, "weight") else layer.weight_packed


def facts_bytes(facts: dict) -> dict:
    return {k: v["value"] * GIB for k, v in facts.items() if v["unit"] == "GiB"}


def load(path: str, weights: str) -> TransformersEngine:
    engine = TransformersEngine({"device": "cpu", "dtype": "bfloat16", "weights": weights})
    engine.load(path, has_weights=True)
    return engine


@pytest.mark.parametrize("name", list(SCHEMES))
def test_load_path_follows_the_bytes_and_dtypes_the_model_really_holds(checkpoints, name):
    engine = load(checkpoints[name], "packed-or-decompressed")
    facts = engine.startup_facts()
    sizes = facts_bytes(facts)
    on_disk = sum(f.stat().st_size for f in Path(checkpoints[name]).glob("*.safetensors"))
    dense = dense_reference(checkpoints)
    assert sizes["checkpoint_gib"] == on_disk
    assert sizes["dense_gib"] == pytest.approx(dense, rel=0.001)
    # Right after from_pretrained the packed tensors are held: the checkpoint's bytes, well
    # under the dense size (the tiny model's BF16 embeddings are half of it).
    assert sizes["weights_held_at_load_gib"] == pytest.approx(on_disk, rel=0.01)
    assert sizes["weights_held_at_load_gib"] < 0.8 * dense
    # After the forward pass: the fact is what the model now holds, and the path matches the
    # dtype of a quantized layer's weight.
    held = tensor_bytes(engine.model)
    assert sizes["weights_held_gib"] == pytest.approx(held, rel=0.001)
    weight = probe_weight(engine.model)
    path = facts["weights_load_path"]["value"]
    if weight.dtype == torch.bfloat16:
        assert path == "decompressed" and held == pytest.approx(dense, rel=0.02)
    else:
        assert path == "packed" and held == pytest.approx(on_disk, rel=0.02)
    assert facts["quant_method"]["value"] == "compressed-tensors"
    assert "Linear" in facts["linear_classes"]["value"]
    # The model still generates, and each request says in which form the weights were.
    record, mem = engine.generate(list(range(1, 9)), output_len=4)
    assert record.output_tokens == 4 and mem["weights_load_path"] == path


@pytest.mark.parametrize("name", list(SCHEMES))
def test_packed_setting_fails_the_cell_unless_the_weights_stay_packed(checkpoints, name):
    either = load(checkpoints[name], "packed-or-decompressed").load_path
    engine = TransformersEngine({"device": "cpu", "weights": "packed"})
    if either == "packed":
        engine.load(checkpoints[name], has_weights=True)
        assert engine.load_path == "packed"
        return
    with pytest.raises(WeightsPathError, match="decompressed after a forward pass"):
        engine.load(checkpoints[name], has_weights=True)
    assert engine.model is None  # the failed cell frees its model
    assert engine.startup_facts()["weights_load_path"]["value"] == "decompressed"


@pytest.mark.parametrize("name", list(SCHEMES))
def test_decompressed_setting_dequantizes_at_load(checkpoints, name):
    engine = load(checkpoints[name], "decompressed")
    sizes = facts_bytes(engine.startup_facts())
    dense = dense_reference(checkpoints)
    assert engine.load_path == "decompressed"
    assert probe_weight(engine.model).dtype == torch.bfloat16
    assert sizes["weights_held_at_load_gib"] == pytest.approx(dense, rel=0.02)
    assert sizes["weights_held_gib"] == pytest.approx(sizes["weights_held_at_load_gib"])
    assert sizes["checkpoint_gib"] < 0.8 * sizes["weights_held_gib"]


def test_unquantized_checkpoint_holds_its_own_size(checkpoints):
    engine = load(checkpoints["bf16"], "packed")
    sizes = facts_bytes(engine.startup_facts())
    assert engine.load_path == "unquantized"
    assert sizes["weights_held_gib"] == pytest.approx(sizes["checkpoint_gib"], rel=0.01)
    assert sizes["weights_held_gib"] == pytest.approx(sizes["dense_gib"], rel=0.01)


def test_a_size_near_neither_form_is_unclear():
    assert decide_path("gptq", held=100, on_disk=100, dense=400) == "packed"
    assert decide_path("gptq", held=390, on_disk=100, dense=400) == "decompressed"
    assert decide_path("gptq", held=250, on_disk=100, dense=400) == "unclear"
    assert decide_path(None, held=250, on_disk=100, dense=400) == "unquantized"


def test_decompressed_memory_is_marked_in_the_speed_and_engine_tables(checkpoints, tmp_path):
    from transformers import AutoTokenizer

    from quantbench.client.prompts import PromptSource

    engine = TransformersEngine({"device": "cpu", "weights": "packed-or-decompressed"})
    launch = engine.launch_spec(checkpoints["w4a16"], True, "compressed-tensors", "tiny-w4a16")
    assert launch["weights_mode"] == "packed-or-decompressed"
    cell = {"model": "tiny", "quantization": "w4a16", "engine": "transformers"}
    with engine.session(launch, str(tmp_path / "log")) as startup:
        prompts = PromptSource(AutoTokenizer.from_pretrained(checkpoints["w4a16"]))
        settings = {"input_lengths": [8], "output_len": 4, "repeats": 1, "warmup": 0, "seed": 0}
        rows, _, _ = run_single(engine, prompts, settings, progress=False)
    path = startup["weights_load_path"]["value"]
    speed = speed_table(pd.DataFrame([{**cell, "scenario": "single", **r} for r in rows]))
    mark = speed.iloc[0]["memory_weights"]
    assert mark.startswith("DECOMPRESSED") if path == "decompressed" else mark == path
    facts = tmp_path / "engine.json"
    facts.write_text(json.dumps({"provenance": cell, "status": "ok", "startup": startup}))
    row = engine_table([str(facts)], None).iloc[0]
    assert row["weights_load_path"] == path
    assert row["checkpoint_gib"] < row["dense_gib"]
    assert row["weights_held_gib"] == startup["weights_held_gib"]["value"]


@pytest.mark.parametrize("path", ["decompressed", "packed"])
def test_published_comparison_marks_memory_of_a_decompressed_load(path):
    from quantbench.published import comparison_table, published_comparison

    cells = pd.DataFrame(
        {
            "scenario": "single",
            "status": "ok",
            "engine": "transformers",
            "model": "Qwen3-8B",
            "quantization": "fp8",
            "input_len": [1, 1],
            "output_len": 2048,
            "speed_tok_s": [40.0, 41.0],
            "decode_speed_tok_s": [40.0, 41.0],
            "peak_mem_mb": [15950.5, 15950.0],
            "mem_method": "torch.cuda.max_memory_allocated",
            "device_name": "NVIDIA H100 80GB HBM3",
            "weights_load_path": path,
        }
    )
    config = {"models": {"Qwen3-8B": {}}, "quantizations": {"fp8": {}}}
    row = comparison_table(published_comparison(cells, config)).iloc[0]
    assert row["memory_mb"].startswith("15950.5")
    assert row["memory_mb"].endswith("(decompressed)") == (path == "decompressed")
    assert row["memory_weights"].startswith("DECOMPRESSED") == (path == "decompressed")
