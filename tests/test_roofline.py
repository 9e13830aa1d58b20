"""Roofline arithmetic, checked against hand calculations written out below."""

import pytest

from quantbench.archs import PUBLISHED_PARAMS, list_archs, load_arch
from quantbench.roofline import (
    decode_bytes_per_token,
    gpu_spec,
    kv_bytes_per_token,
    mean_decode_context,
    param_count,
    roofline_share,
    roofline_tok_s,
)

# hidden 8, 2 q heads / 1 kv head of dim 4. Per layer:
#   q 8*8=64, k 8*4=32, v 32, o 8*8=64 -> 192; qk-norm 4+4=8; input+post norms 8+8=16
#   dense MLP 3*8*16=384 -> layer 600; two layers 1200 + final norm 8 = 1208; embedding 10*8=80
TINY = {
    "model_type": "qwen3",
    "hidden_size": 8,
    "intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 4,
    "vocab_size": 10,
    "tie_word_embeddings": True,
}
# Same attention; MoE MLP with 4 experts of 3*8*4=96 (all 384, top-2 192) and a router 8*4=32:
#   layer all 192+8+16+32+384=632, active 192+8+16+32+192=440
#   decoder all 2*632+8=1272, active 2*440+8=888
TINY_MOE = {
    **TINY,
    "model_type": "qwen3_moe",
    "tie_word_embeddings": False,
    "moe_intermediate_size": 4,
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
}


def test_param_count_dense_tied_and_untied():
    assert param_count(TINY) == {
        "total": 1208 + 80,
        "active": 1288,
        "non_embedding": 1208,
        "embedding": 80,
    }
    untied = param_count({**TINY, "tie_word_embeddings": False})
    assert untied["total"] == 1208 + 2 * 80


def test_param_count_moe():
    pc = param_count(TINY_MOE)
    assert pc["total"] == 1272 + 160
    assert pc["active"] == 888 + 160
    # layer 0 dense (mlp_only_layers): 600; layer 1 MoE: 632; + final norm 8
    assert param_count({**TINY_MOE, "mlp_only_layers": [0]})["total"] == 600 + 632 + 8 + 160


def test_decode_bytes_tiny_dense():
    # bf16, no context: decoder 1208 + lm_head 80 params, 2 bytes each. Tied or not, the lm_head
    # matrix is read once and the embedding table is not read.
    assert decode_bytes_per_token(TINY, 16, 0) == 2576
    assert decode_bytes_per_token({**TINY, "tie_word_embeddings": False}, 16, 0) == 2576
    # KV: 2 (K,V) * 2 layers * 1 head * 4 dim * 2 bytes = 32 bytes a token; 10 tokens -> 320
    assert kv_bytes_per_token(TINY) == 32
    assert decode_bytes_per_token(TINY, 16, 10) == 2576 + 320
    assert decode_bytes_per_token(TINY, 16, 10, kv_bits=8) == 2576 + 160
    # 4-bit decoder, bf16 lm_head: 1208 * 0.5 + 80 * 2 = 764
    assert decode_bytes_per_token(TINY, 4, 0) == 764
    assert decode_bytes_per_token(TINY, 4, 0, lm_head_bits=4) == (1208 + 80) / 2


def test_decode_bytes_tiny_moe_active_vs_all():
    assert decode_bytes_per_token(TINY_MOE, 16, 0) == (888 + 80) * 2
    assert decode_bytes_per_token(TINY_MOE, 16, 0, active_params_only=False) == (1272 + 80) * 2


def test_qwen3_8b_bf16_ceiling_on_h100():
    arch = load_arch("Qwen3-8B")
    # Per layer: q 4096*4096 + k,v 2*4096*1024 + o 4096*4096 = 41,943,040; qk-norm 256;
    # MLP 3*4096*12288 = 150,994,944; norms 8192 -> 192,946,432; x36 + 4096 = 6,946,075,648.
    # Embedding 151936*4096 = 622,329,856, untied -> total 8,190,735,360 (card: 8.2B).
    assert param_count(arch)["total"] == 8_190_735_360
    # All weights in bf16 are 16.38 GB; a decode step skips the embedding table -> 15.14 GB.
    assert param_count(arch)["total"] * 2 == pytest.approx(16.38e9, rel=1e-3)
    per_token = decode_bytes_per_token(arch, 16, 0)
    assert per_token == (6_946_075_648 + 622_329_856) * 2 == 15_136_811_008
    h100 = "NVIDIA H100 80GB HBM3"
    assert roofline_tok_s(arch, 16, 0, h100) == pytest.approx(3.35e12 / 15_136_811_008)  # 221.3
    assert roofline_tok_s(arch, 16, 0, 3.35) == roofline_tok_s(arch, 16, 0, h100)
    # KV per token: 2 * 36 layers * 8 heads * 128 * 2 bytes = 147,456 bytes
    assert kv_bytes_per_token(arch) == 147_456
    assert decode_bytes_per_token(arch, 16, 1000) == 15_136_811_008 + 147_456_000


def test_tp_multiplies_bandwidth_and_share():
    arch = load_arch("Qwen3-32B")
    one = roofline_tok_s(arch, 16, 4096, "NVIDIA H20")
    assert roofline_tok_s(arch, 16, 4096, "NVIDIA H20", gpus=2) == pytest.approx(2 * one)
    assert roofline_share(one / 4, arch, 16, 4096, "NVIDIA H20") == pytest.approx(0.25)
    with pytest.raises(ValueError):
        roofline_tok_s(arch, 16, 0, "Some Unknown GPU")


def test_moe_active_far_below_total():
    for name in ("Qwen3-30B-A3B", "Qwen3-235B-A22B"):
        arch = load_arch(name)
        pc = param_count(arch)
        assert pc["active"] < pc["total"] / 9
        assert decode_bytes_per_token(arch, 16, 0) < decode_bytes_per_token(
            arch, 16, 0, active_params_only=False
        )


def test_counts_match_model_cards():
    for name in list_archs():
        pc = param_count(load_arch(name))
        for key, billions in PUBLISHED_PARAMS[name].items():
            # Cards round to 2-3 significant figures.
            assert pc[key] / 1e9 == pytest.approx(billions, rel=0.02, abs=0.02), (name, key)
    # Exact figures with an outside source: a Qwen3-1.7B safetensors header holds 1,720,574,976
    # parameters; 0.6B by hand: 28*(6,291,456+256+9,437,184+2,048) + 1,024 + 155,582,464.
    assert param_count(load_arch("Qwen3-1.7B"))["total"] == 1_720_574_976
    assert param_count(load_arch("Qwen3-0.6B"))["total"] == 596_049_920


def test_counts_match_transformers_meta_model():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    for name in ("Qwen3-0.6B", "Qwen3-8B", "Qwen3-30B-A3B"):
        cfg = load_arch(name)
        config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
        # parameters() yields a tied weight once, matching param_count's "total".
        assert sum(p.numel() for p in model.parameters()) == param_count(load_arch(name))["total"]


def test_gpu_spec_patterns():
    assert gpu_spec("NVIDIA H100 80GB HBM3").hbm_tb_s == 3.35
    assert gpu_spec("NVIDIA H100 PCIe").hbm_tb_s == 2.0
    assert gpu_spec("NVIDIA H20").hbm_tb_s == 4.0
    assert gpu_spec("NVIDIA H200").hbm_tb_s == 4.8  # not taken for an H20
    assert gpu_spec("NVIDIA L40").hbm_tb_s == 0.864
    assert gpu_spec("NVIDIA A100-SXM4-80GB").hbm_tb_s == 2.039
    assert gpu_spec("NVIDIA B200").hbm_tb_s == 8.0
    assert gpu_spec("NVIDIA GeForce RTX 4090") is None


def test_mean_decode_context():
    assert mean_decode_context(6144, 2048) == 7168
    assert mean_decode_context(1, 2048) == 1025
