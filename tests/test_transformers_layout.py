"""Issue 21: Transformers fills a weightless FP8 layout (method `layout`, Qwen3-*-FP8's format)
with random tensors, as vLLM / SGLang do with --load-format dummy, so its memory cells need no
BF16 weights on disk. On this CPU Transformers dequantizes FP8 (it keeps the packed kernels on
CUDA SM89+), which the engine's weight check must then say; the tensors it is handed are those
of the FP8 checkpoint."""

import json

import pytest
import torch
from transformers import Qwen3Config

from quantbench.engines.transformers import TransformersEngine
from quantbench.engines.transformers import layout_weights as lw
from quantbench.engines.transformers.weights import WeightsPathError
from quantbench.quant.layout import LAYOUTS

TINY = dict(
    vocab_size=512,
    hidden_size=256,
    intermediate_size=384,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    max_position_embeddings=4096,
)


def layout_config(tie: bool, fmt: str = "fp8") -> Qwen3Config:
    return Qwen3Config.from_dict(
        {**TINY, "tie_word_embeddings": tie, "quantization_config": dict(LAYOUTS[fmt])}
    )


@pytest.fixture
def layout_dir(tmp_path):
    """What method `layout` writes for a dummy model: config.json, no weights."""
    (tmp_path / "config.json").write_text(json.dumps(layout_config(tie=True).to_dict()))
    return tmp_path


@pytest.mark.parametrize("tie", [True, False])
def test_the_state_dict_is_the_fp8_checkpoints(tie):
    state = lw.random_state_dict(layout_config(tie), torch.bfloat16)
    down = "model.layers.1.mlp.down_proj"  # 256 x 384: blocks of 128 x 128, the last one partial
    assert state[f"{down}.weight"].dtype == torch.float8_e4m3fn
    assert state[f"{down}.weight_scale_inv"].shape == (2, 3)
    assert not state[f"{down}.weight"].float().isnan().any()  # random bytes, none a NaN code
    assert state["model.embed_tokens.weight"].dtype == torch.bfloat16
    # the output layer its own tensor, unquantized, as in the published FP8 checkpoints
    assert state["lm_head.weight"].dtype == torch.bfloat16
    assert state["lm_head.weight"] is not state["model.embed_tokens.weight"]
    assert "lm_head.weight_scale_inv" not in state
    fp8 = [k for k, v in state.items() if v.dtype == torch.float8_e4m3fn]
    assert len(fp8) == 2 * 7  # q, k, v, o, gate, up, down in each layer


def test_the_engine_loads_the_layout_and_says_in_which_form(layout_dir):
    engine = TransformersEngine({"device": "cpu", "weights": "packed-or-decompressed"})
    engine.load(str(layout_dir), has_weights=False)
    facts = engine.startup_facts()
    # on CPU Transformers dequantizes FP8: the check sees the dense size, not the layout's
    assert facts["weights_load_path"]["value"] == "decompressed"
    layout_gib = facts["checkpoint_gib"]["value"]
    assert 0 < layout_gib < facts["dense_gib"]["value"] * 0.75  # FP8 linears: about half
    record, _ = engine.generate([1, 2, 3, 4], 5)
    assert record.output_tokens == 5
    engine.close()


def test_packed_asked_on_a_cpu_fails_with_the_sizes(layout_dir):
    engine = TransformersEngine({"device": "cpu", "weights": "packed"})
    with pytest.raises(WeightsPathError, match="fp8 checkpoint's weights are decompressed"):
        engine.load(str(layout_dir), has_weights=False)


def test_a_layout_it_does_not_fill_is_refused_by_name():
    config = layout_config(tie=True)
    config.quantization_config = {"quant_method": "bitnet"}
    with pytest.raises(ValueError, match=r"fills only the \['fp8', 'gptq', 'awq'\].*not 'bitnet'"):
        lw.random_state_dict(config, torch.bfloat16)


@pytest.mark.parametrize("fmt", ["gptq", "awq"])
@pytest.mark.parametrize("tie", [True, False])
def test_a_packed_layouts_state_dict_leaves_the_quantized_layers_to_the_kernel(fmt, tie):
    """GPTQModel's kernels build and transform the packed tensors: the state dict holds the
    rest, with the config's own tying (only the FP8 checkpoints untie the output layer): a tied
    output layer drawn as its own tensor would be loaded as one, an embedding matrix too many."""
    config = layout_config(tie=tie, fmt=fmt)
    state = lw.random_state_dict(config, torch.bfloat16)
    assert not [k for k in state if k.endswith("_proj.weight")]
    assert "model.embed_tokens.weight" in state
    assert ("lm_head.weight" in state) is not tie
    assert lw.dense_config(config).tie_word_embeddings is tie
    assert lw.dense_config(layout_config(tie=True)).tie_word_embeddings is False  # fp8


def test_only_a_packed_layouts_quantized_tensors_may_be_missing():
    gptq, fp8 = layout_config(tie=True, fmt="gptq"), layout_config(tie=True)
    up = "model.layers.0.mlp.up_proj"
    packed = {"missing_keys": [f"{up}.qweight", f"{up}.g_idx"]}
    lw.check_loaded(packed, gptq)  # fill_packed fills them
    with pytest.raises(RuntimeError, match="does not match"):
        lw.check_loaded(packed, fp8)
    with pytest.raises(RuntimeError, match="input_layernorm"):
        lw.check_loaded({"missing_keys": ["model.layers.0.input_layernorm.weight"]}, gptq)


def test_fill_packed_fills_in_place_and_counts_the_bytes():
    class Packed(torch.nn.Module):  # the tensors a GPTQModel kernel registers
        def __init__(self):
            super().__init__()
            self.register_buffer("qweight", torch.zeros(32, 64, dtype=torch.int32))
            self.register_buffer("qzeros", torch.zeros(2, 8, dtype=torch.int32))
            self.register_buffer("scales", torch.zeros(2, 64, dtype=torch.float16))
            self.register_buffer("g_idx", torch.zeros(256, dtype=torch.int32))

    model = torch.nn.Sequential(Packed(), torch.nn.LayerNorm(4))
    filled = lw.fill_packed(model, layout_config(tie=True, fmt="gptq"))
    layer = model[0]
    assert filled == sum(t.nbytes for t in layer.buffers())
    assert (layer.qweight != 0).float().mean() > 0.9  # random codes, not the zeros it had
    assert torch.equal(layer.g_idx, torch.arange(256, dtype=torch.int32) // 128)
    assert (layer.scales > 0).all()
    with pytest.raises(RuntimeError, match="no packed gptq layers"):
        lw.fill_packed(torch.nn.Linear(4, 4), layout_config(tie=True, fmt="gptq"))
    assert lw.fill_packed(model, layout_config(tie=True)) == 0  # fp8: the state dict had all


MOE = dict(TINY, moe_intermediate_size=128, num_experts=4, num_experts_per_tok=2)


def moe_config(fmt: str = "fp8"):
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig.from_dict({**MOE, "quantization_config": dict(LAYOUTS[fmt])})


def test_fused_moe_experts_are_drawn_as_the_fp8_checkpoints_experts(monkeypatch):
    """Transformers 5 holds a MoE layer's experts as one [experts, out, in] tensor per
    projection; Qwen3-30B-A3B-FP8 holds one FP8 linear layer per expert. The layout draws the
    checkpoint's, and Transformers' own FP8 loading (the CUDA path, its GPU check lifted so it
    runs here) merges them into its FP8 experts: every tensor taken, none left over, the bytes
    those of the checkpoint."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
    from transformers.quantizers.quantizer_finegrained_fp8 import FineGrainedFP8HfQuantizer

    config = moe_config()
    state = lw.random_state_dict(config, torch.bfloat16)
    gate = "model.layers.1.mlp.experts.3.gate_proj"  # 128 x 256: one block row, two columns
    assert state[f"{gate}.weight"].dtype == torch.float8_e4m3fn
    assert state[f"{gate}.weight"].shape == (128, 256)
    assert state[f"{gate}.weight_scale_inv"].shape == (1, 2)
    assert state["model.layers.1.mlp.experts.3.down_proj.weight"].shape == (256, 128)
    assert state["model.layers.1.mlp.gate.weight"].dtype == torch.bfloat16  # the router
    assert not [k for k in state if "gate_up_proj" in k]
    checkpoint = {k: v.clone() for k, v in state.items()}

    monkeypatch.setattr(FineGrainedFP8HfQuantizer, "validate_environment", lambda *a, **k: None)
    model, info = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)].from_pretrained(
        None, config=config, state_dict=state, dtype=torch.bfloat16, device_map="cpu",
        output_loading_info=True,
    )  # fmt: skip
    lw.check_loaded(info, config)
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    experts = model.model.layers[1].mlp.experts
    assert type(experts).__name__ == "FP8Experts"
    assert experts.gate_up_proj.dtype == torch.float8_e4m3fn
    up = checkpoint["model.layers.1.mlp.experts.2.up_proj.weight"]  # gate rows, then up rows
    assert torch.equal(experts.gate_up_proj[2, 128:].view(torch.uint8), up.view(torch.uint8))
    assert torch.equal(experts.down_proj_scale_inv, torch.full((4, 2, 1), lw.SCALE))
    held = sum(t.nbytes for t in model.state_dict().values())
    assert held == sum(t.nbytes for t in checkpoint.values())


def test_the_engine_runs_a_moe_fp8_layout(tmp_path):
    """On this CPU the FP8 experts are dequantized on load (the weight check says so) and a
    request runs through the MoE layers."""
    (tmp_path / "config.json").write_text(json.dumps(moe_config().to_dict()))
    engine = TransformersEngine({"device": "cpu", "weights": "packed-or-decompressed"})
    engine.load(str(tmp_path), has_weights=False)
    assert engine.startup_facts()["weights_load_path"]["value"] == "decompressed"
    record, _ = engine.generate([1, 2, 3, 4], 5)
    assert record.output_tokens == 5
    engine.close()


@pytest.mark.parametrize("fmt", ["gptq", "awq"])
def test_a_packed_layout_of_fused_moe_experts_is_refused(fmt):
    """Transformers' GPTQ / AWQ loading leaves fused experts unquantized: a figure from it
    would be BF16 experts under a 4-bit name."""
    with pytest.raises(ValueError, match=f"the {fmt} layout of a model with fused expert"):
        lw.random_state_dict(moe_config(fmt), torch.bfloat16)
