"""Random tensors in a published quantized layout, for a dummy model (method `layout`) on
Transformers: what vLLM and SGLang do with `--load-format dummy`. Transformers loads files or a
state dict only, so the engine builds the state dict a checkpoint in that layout holds and
passes it to from_pretrained, whose own quantizer builds the quantized layers: kernels and
memory are the format's, with no weights on disk (a 32B model's would not fit the disk).

FP8 is Qwen3-*-FP8's layout (Transformers' fine-grained FP8): every linear layer but the output
one holds `weight` in float8_e4m3fn and a float32 `weight_scale_inv` per 128 x 128 block;
embeddings, norms and the output layer stay in the load dtype. The output layer is its own
tensor even where the model ties it to the embeddings: Transformers then does not tie them, and
only so does the layout account for the published FP8 memory of the tied models (Qwen3-0.6B /
1.7B / 4B at 1 token: 1217 / 2726 / 5281 MB published; layout + KV cache 1238 / 2756 / 5238 MiB
with a separate output layer, 941 / 2162 / 4496 without; the untied 8B-32B within 0.4-0.8 %;
measured on the H200, 2026-12-07: within 0.5 % from 4B up). A MoE model's experts, one fused
[experts, out, in] tensor per projection in Transformers 5, are drawn as the published checkpoint
holds them, one FP8 linear layer per expert (Qwen3-30B-A3B-FP8): Transformers merges them on load
into its FP8 experts (FP8Experts), scales included.

GPTQ and AWQ (GPTQModel's kernels, installed in the engine's environment) are packed int32
tensors whose shapes and post-load transforms belong to the kernel GPTQModel picks, so the state
dict holds only the unquantized tensors (embeddings, norms, output layer), a tied output layer
once, as the config ties it; the quantized layers are built by from_pretrained and then filled
on the device (fill_packed): random bits, a constant scale, group indices in order. Measured on
the H100 (2026-12-07), an output layer drawn apart from tied embeddings stayed apart: one extra
embedding matrix over the published GPTQ cells of Qwen3-0.6B / 1.7B (297 / 593 MiB)."""

from __future__ import annotations

import math

FORMATS = ("fp8", "gptq", "awq")  # the layouts this engine fills; vLLM / SGLang fill every one
PACKED_FORMATS = ("gptq", "awq")  # filled on the device after load (fill_packed)
# The quantized layers' tensors GPTQModel's kernels hold; a checkpoint holds them too.
PACKED_TENSORS = ("qweight", "qzeros", "scales", "g_idx")
# A fused expert tensor -> the per-expert linear layers a checkpoint holds (split along `out`).
EXPERT_PROJECTIONS = {"gate_up_proj": ("gate_proj", "up_proj"), "down_proj": ("down_proj",)}
FP8_NAN_BITS = 0x7F  # e4m3fn's only NaN magnitude: random bytes stay below it
SCALE = 2.0**-9  # small enough that random codes stay finite through the layers


def random_state_dict(config, dtype, seed: int = 0, device: str = "cpu") -> dict:
    """`config` (its quantization_config a layout's) -> the random state dict of a checkpoint in
    that layout, on `device` (on a GPU the random draws take seconds, on a CPU minutes for a 32B
    model). Values are random: memory and kernels are real, outputs are not."""
    import torch
    from transformers import AutoModelForCausalLM

    qc = _layout(config)
    packed = qc["quant_method"] in PACKED_FORMATS
    keep = {"lm_head", *(qc.get("modules_to_not_convert") or [])}
    with torch.device("meta"):
        shape = AutoModelForCausalLM.from_config(dense_config(config), dtype=dtype)
    tensors = shape.state_dict(keep_vars=True)  # tied tensors: one object under each name
    fused = [k for k, t in tensors.items() if t.dim() > 2]
    if fused and packed:  # measured with Transformers 5.25 + GPTQModel 7.6 on the CPU
        raise ValueError(
            f"the {qc['quant_method']} layout of a model with fused expert tensors ({fused[0]}, "
            "...): Transformers' GPTQ / AWQ loading leaves them unquantized, so the figure would "
            "be BF16 experts, not the format's; the published table has no such cell either"
        )
    quantized = {
        name
        for name, module in shape.named_modules()
        if isinstance(module, torch.nn.Linear) and not keep & set(name.split("."))
    }
    gen = torch.Generator(device=device).manual_seed(seed)
    state, drawn = {}, set()
    for key, meta in tensors.items():
        if id(meta) in drawn:  # tied to a tensor already drawn: a checkpoint holds it once
            continue
        drawn.add(id(meta))
        module, _, leaf = key.rpartition(".")
        if meta.dim() > 2:  # fused MoE experts (FP8 only, above)
            state.update(_expert_layers(module, leaf, tuple(meta.shape), qc, gen))
        elif module in quantized and leaf == "weight":
            if packed:  # built by the quantizer, filled after load (fill_packed)
                continue
            state.update(_fp8_linear(module, tuple(meta.shape), qc, gen))
        elif "norm" in key:
            state[key] = torch.ones(meta.shape, dtype=meta.dtype, device=device)
        else:
            state[key] = torch.empty(meta.shape, dtype=meta.dtype, device=device).normal_(
                0, 0.02, generator=gen
            )
    return state


def _fp8_linear(module: str, shape: tuple[int, int], qc: dict, gen) -> dict:
    """One FP8 linear layer of the checkpoint: its weight and a scale per block."""
    import torch

    block_out, block_in = qc["weight_block_size"]
    blocks = (math.ceil(shape[0] / block_out), math.ceil(shape[1] / block_in))
    return {
        f"{module}.weight": _random_fp8(shape, gen),
        f"{module}.weight_scale_inv": torch.full(blocks, SCALE, device=gen.device),
    }


def _expert_layers(module: str, leaf: str, shape: tuple, qc: dict, gen) -> dict:
    """A fused expert tensor [experts, out, in] as the checkpoint's per-expert FP8 layers
    (`{module}.{expert}.{projection}.weight`), e.g. gate_up_proj as gate_proj and up_proj."""
    parts = EXPERT_PROJECTIONS.get(leaf)
    if parts is None or len(shape) != 3 or shape[1] % len(parts):
        raise ValueError(
            f"the fp8 layout splits the fused expert tensors {sorted(EXPERT_PROJECTIONS)}, not "
            f"{module}.{leaf} {list(shape)}: quantize this MoE model with a real method"
        )
    experts, out, inp = shape
    layers = {}
    for expert in range(experts):
        for part in parts:
            layers.update(
                _fp8_linear(f"{module}.{expert}.{part}", (out // len(parts), inp), qc, gen)
            )
    return layers


def dense_config(config):
    """The layout's architecture unquantized: its quantization_config dropped and, for FP8, as
    its checkpoint holds it (module docstring), the output layer untied. The weight check's
    dense yardstick is built from it too."""
    fields = {k: v for k, v in config.to_dict().items() if k != "quantization_config"}
    if _layout(config)["quant_method"] == "fp8":
        fields["tie_word_embeddings"] = False
    return config.__class__.from_dict(fields)


def check_loaded(info: dict, config) -> None:
    """Fail where from_pretrained did not take the state dict as the layout's checkpoint: a
    missing key would be left at whatever the library initialises it with. Only a packed
    layout's quantized tensors may be missing: fill_packed fills them next."""
    packed = _layout(config)["quant_method"] in PACKED_FORMATS
    wrong = {
        k: sorted(
            key
            for key in info.get(k) or []
            if not (k == "missing_keys" and packed and key.rpartition(".")[2] in PACKED_TENSORS)
        )
        for k in ("missing_keys", "unexpected_keys")
    }
    if any(wrong.values()):
        raise RuntimeError(f"the random layout does not match the quantized model: {wrong}")


def fill_packed(model, config, seed: int = 0) -> int:
    """Fill a packed layout's quantized tensors in place, on their device, in whatever layout
    the kernel keeps them; returns their bytes (what the checkpoint's quantized tensors hold).
    Codes are random, scales one small constant, group indices in order (a kernel gathers
    by them). Nothing to do for FP8 (its state dict held every tensor)."""
    import torch

    qc = _layout(config)
    if qc["quant_method"] not in PACKED_FORMATS:
        return 0
    filled = 0
    gen = None
    with torch.no_grad():
        for module in model.modules():
            if not hasattr(module, "qweight"):
                continue
            for leaf in PACKED_TENSORS:
                t = getattr(module, leaf, None)
                if not isinstance(t, torch.Tensor) or t.numel() == 0:
                    continue
                if gen is None:
                    gen = torch.Generator(device=t.device).manual_seed(seed)
                if leaf == "scales":
                    t.fill_(SCALE)
                elif leaf == "g_idx":
                    t.copy_(torch.arange(t.numel(), device=t.device) // qc["group_size"])
                else:
                    info = torch.iinfo(t.dtype)
                    t.copy_(torch.randint(info.min, info.max, t.shape, generator=gen,
                                          dtype=t.dtype, device=t.device))  # fmt: skip
                filled += t.nbytes
    if not filled:
        raise RuntimeError(
            f"no packed {qc['quant_method']} layers after load: the quantizer did not build them"
        )
    return filled


def _layout(config) -> dict:
    qc = getattr(config, "quantization_config", None) or {}
    qc = qc if isinstance(qc, dict) else qc.to_dict()
    method = qc.get("quant_method")
    if method not in FORMATS:
        raise ValueError(
            f"Transformers fills only the {list(FORMATS)} layouts with random tensors, not "
            f"{method!r}: quantize the model with a real method (llmcompressor, gptqmodel)"
        )
    return qc


def _random_fp8(shape: tuple[int, int], gen):
    """Random float8_e4m3fn values, none NaN: a random magnitude byte below 0x7F and a sign."""
    import torch

    draw = dict(generator=gen, dtype=torch.uint8, device=gen.device)
    magnitude = torch.randint(0, FP8_NAN_BITS, shape, **draw)
    sign = torch.randint(0, 2, shape, **draw) << 7
    return (magnitude | sign).view(torch.float8_e4m3fn)
