"""Memory-bandwidth roofline for batch-1 decoding.

At batch 1 every decode step streams the weights it uses plus the KV cache once from HBM, so
``bandwidth / bytes_per_token`` bounds decode speed; the share of that bound a run reaches says
how close an engine/kernel gets to the hardware, independently of which GPU it ran on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gib: float  # nominal capacity as marketed; torch reports slightly less
    hbm_tb_s: float  # peak memory bandwidth, 1e12 bytes/s
    bf16_dense_tflops: float  # tensor-core BF16, dense (no 2:4 sparsity)


# (regex searched in torch.cuda.get_device_name(), spec). First match wins, so variants that share
# a prefix come before the plain name ("H100 PCIe" before "H100"); \b keeps "H20" off "H200".
_GPUS: list[tuple[str, GpuSpec]] = [
    (r"\bH100\b.*\bPCIe\b", GpuSpec("H100 PCIe", 80, 2.0, 756)),
    (r"\bH100\b.*\bNVL\b", GpuSpec("H100 NVL", 94, 3.9, 835)),
    (r"\bH100\b", GpuSpec("H100 SXM", 80, 3.35, 989)),
    (r"\bH200\b", GpuSpec("H200", 141, 4.8, 989)),
    (r"\bH20\b", GpuSpec("H20", 96, 4.0, 148)),
    (r"\bA100\b.*40GB", GpuSpec("A100 40GB", 40, 1.555, 312)),
    (r"\bA100\b.*PCIe", GpuSpec("A100 80GB PCIe", 80, 1.935, 312)),
    (r"\bA100\b", GpuSpec("A100 80GB SXM", 80, 2.039, 312)),
    (r"\bB200\b", GpuSpec("B200", 180, 8.0, 2250)),
    (r"\bL40S\b", GpuSpec("L40S", 48, 0.864, 362)),
    (r"\bL40\b", GpuSpec("L40", 48, 0.864, 181)),
]


def gpu_spec(device_name: str) -> GpuSpec | None:
    """Spec for a ``torch.cuda.get_device_name()`` string, e.g. "NVIDIA H100 80GB HBM3"."""
    for pattern, spec in _GPUS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return spec
    return None


def _is_moe_layer(arch: dict, i: int) -> bool:
    # Same rule as transformers' Qwen3MoeDecoderLayer.
    return (
        arch.get("num_experts", 0) > 0
        and i not in arch.get("mlp_only_layers", [])
        and (i + 1) % arch.get("decoder_sparse_step", 1) == 0
    )


def _decoder_params(arch: dict) -> tuple[int, int]:
    """(all, active-per-token) parameters of the decoder layers plus the final norm."""
    h = arch["hidden_size"]
    hd = arch.get("head_dim") or h // arch["num_attention_heads"]
    q = arch["num_attention_heads"] * hd
    kv = arch["num_key_value_heads"] * hd
    bias = q + 2 * kv + h if arch.get("attention_bias") else 0
    attn = h * q + 2 * h * kv + q * h + bias
    # Qwen3 RMS-normalises q and k per head (qk-norm): two head_dim vectors per layer.
    qk_norm = 2 * hd if arch.get("model_type", "").startswith("qwen3") else 0
    shared = attn + qk_norm + 2 * h  # + input and post-attention RMSNorm
    total = active = 0
    for i in range(arch["num_hidden_layers"]):
        if _is_moe_layer(arch, i):
            expert = 3 * h * arch["moe_intermediate_size"]  # gate, up, down
            router = h * arch["num_experts"]
            total += shared + router + arch["num_experts"] * expert
            active += shared + router + arch["num_experts_per_tok"] * expert
        else:
            mlp = 3 * h * arch["intermediate_size"]
            total += shared + mlp
            active += shared + mlp
    return total + h, active + h


def param_count(arch: dict) -> dict[str, int]:
    """Parameter counts as model cards state them.

    ``total`` counts a tied embedding once; ``active`` is what one token touches (all of it for
    dense models; Qwen's "activated" figure includes the embedding and lm_head);
    ``non_embedding`` excludes the embedding table and an untied lm_head, as Qwen's cards do.
    """
    decoder, decoder_active = _decoder_params(arch)
    embed = arch["vocab_size"] * arch["hidden_size"]
    emb_total = embed if arch.get("tie_word_embeddings") else 2 * embed
    return {
        "total": decoder + emb_total,
        "active": decoder_active + emb_total,
        "non_embedding": decoder,
        "embedding": embed,
    }


def kv_bytes_per_token(arch: dict, kv_bits: float = 16) -> float:
    """KV-cache bytes one cached token occupies (K and V, every layer; Qwen3 has no SWA)."""
    hd = arch.get("head_dim") or arch["hidden_size"] // arch["num_attention_heads"]
    return 2 * arch["num_hidden_layers"] * arch["num_key_value_heads"] * hd * kv_bits / 8


def resident_bytes(
    arch: dict,
    weight_bits: float,
    cached_tokens: int,
    kv_bits: float = 16,
    embedding_bits: float = 16,
) -> float:
    """Bytes a batch-1 run must hold once ``cached_tokens`` are cached: every weight (decoder at
    ``weight_bits``, all experts of an MoE; the embedding and an untied lm_head at
    ``embedding_bits``, which quantized checkpoints keep in BF16) plus the KV cache. A run's
    peak memory is this floor plus the implementation's working memory."""
    counts = param_count(arch)
    decoder = counts["non_embedding"]
    return (
        decoder * weight_bits / 8
        + (counts["total"] - decoder) * embedding_bits / 8
        + kv_bytes_per_token(arch, kv_bits) * cached_tokens
    )


def decode_bytes_per_token(
    arch: dict,
    weight_bits: float,
    context_len: float,
    kv_bits: float = 16,
    active_params_only: bool = True,
    lm_head_bits: float = 16,
) -> float:
    """HBM bytes read by one batch-1 decode step: weights used + KV cache of ``context_len``.

    Decoder weights (for MoE only the routed top-k experts when ``active_params_only``) are
    counted at ``weight_bits``; pass an effective width to include quantisation scales (e.g. ~4.25
    for group-128 INT4). The embedding lookup reads one row, so the table is not counted; the
    lm_head matmul reads vocab x hidden every step whether or not it is tied to the embedding.
    ``lm_head_bits`` defaults to 16 because Qwen's FP8/GPTQ/AWQ checkpoints keep lm_head in BF16.
    Norms and the router are charged at ``weight_bits`` too: under 0.1% of the bytes.
    """
    decoder, decoder_active = _decoder_params(arch)
    weights = (decoder_active if active_params_only else decoder) * weight_bits / 8
    lm_head = arch["vocab_size"] * arch["hidden_size"] * lm_head_bits / 8
    return weights + lm_head + kv_bytes_per_token(arch, kv_bits) * context_len


def mean_decode_context(prompt_len: int, new_tokens: int) -> float:
    """Average cached length over a decode of ``new_tokens`` after a ``prompt_len`` prompt."""
    return prompt_len + new_tokens / 2


def _bandwidth_bytes_s(gpu: str | float) -> float:
    if isinstance(gpu, str):
        spec = gpu_spec(gpu)
        if spec is None:
            raise ValueError(f"no spec for GPU {gpu!r}; pass its bandwidth in TB/s instead")
        return spec.hbm_tb_s * 1e12
    return float(gpu) * 1e12


def roofline_tok_s(
    arch: dict,
    weight_bits: float,
    context_len: float,
    gpu: str | float,
    gpus: int = 1,
    kv_bits: float = 16,
    active_params_only: bool = True,
    lm_head_bits: float = 16,
) -> float:
    """Upper bound on batch-1 decode tokens/s.

    ``gpu`` is a device name (looked up with ``gpu_spec``) or a bandwidth in TB/s. Tensor
    parallelism splits the bytes over ``gpus`` devices that stream concurrently, so the set's
    bandwidth is ``gpus`` times one GPU's (communication ignored: this is a bound).
    """
    per_token = decode_bytes_per_token(
        arch, weight_bits, context_len, kv_bits, active_params_only, lm_head_bits
    )
    return _bandwidth_bytes_s(gpu) * gpus / per_token


def roofline_share(measured_decode_tok_s: float, *args, **kwargs) -> float:
    """Measured decode tokens/s as a fraction of ``roofline_tok_s(*args, **kwargs)``."""
    return measured_decode_tok_s / roofline_tok_s(*args, **kwargs)
