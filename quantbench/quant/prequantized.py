"""`prequantized`: a published quantized checkpoint (e.g. Qwen/Qwen3-8B-AWQ, Qwen/Qwen3-8B-FP8)
used as the quantization's output, in place.

Its format must be known when the workflow is parsed (the compatibility check plans cells before
any download), so the config entry states it (`format:`); at run time the checkpoint's
config.json `quantization_config.quant_method` must agree, or the quantization fails with both.
"""

from __future__ import annotations

import json
from pathlib import Path

from quantbench.quant import QuantMethod, register_quant_method

# config.json quant_method -> quantbench checkpoint format (the compatibility table's key).
QUANT_METHOD_FORMATS = {
    "awq": "awq",
    "gptq": "gptq",
    "fp8": "fp8",
    "compressed-tensors": "compressed-tensors",
}
# Architecture keys that must match the workflow model the checkpoint stands in for.
ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size")


class PrequantizedError(RuntimeError):
    pass


def resolve_checkpoint(ident: str, revision: str | None = None) -> Path:
    """A local directory as is, or a Hub snapshot through huggingface_hub's cache."""
    if Path(ident).is_dir():
        return Path(ident).resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ident, revision=revision))
    except Exception as err:  # noqa: BLE001 - offline, unknown repo, gated: one clear message
        raise PrequantizedError(
            f"could not get prequantized checkpoint {ident!r} from the Hugging Face Hub "
            f"({type(err).__name__}: {err}). Where the Hub is unreachable, download it where it "
            "is reachable (`hf download <id>` fills the cache) and set HF_HUB_OFFLINE=1, or "
            "give a local directory as `id`."
        ) from err


def detect(config: dict) -> dict:
    """Format, scheme, bits and group size from config.json's quantization_config."""
    qc = config.get("quantization_config")
    if not qc:
        raise PrequantizedError("config.json has no quantization_config: not a quantized model")
    method = qc.get("quant_method")
    fmt = QUANT_METHOD_FORMATS.get(method)
    if fmt is None:
        raise PrequantizedError(
            f"quantization_config.quant_method {method!r}: "
            f"not one of {sorted(QUANT_METHOD_FORMATS)}"
        )
    facts = {"format": fmt, "quant_method": method}
    if fmt in ("awq", "gptq"):
        bits = qc.get("bits", qc.get("w_bit"))
        facts.update(
            scheme=f"W{bits}A16 {fmt.upper()}",
            weight_bits=bits,
            group_size=qc.get("group_size", qc.get("q_group_size")),
        )
    elif fmt == "fp8":
        block = qc.get("weight_block_size")
        facts.update(
            scheme="FP8_BLOCK" if block else "FP8",
            weight_bits=8,
            group_size="x".join(map(str, block)) if block else None,
            activation_scheme=qc.get("activation_scheme"),
        )
    else:  # compressed-tensors: the first config group describes the Linear weights
        groups = qc.get("config_groups") or {}
        weights = next(iter(groups.values()), {}).get("weights") or {}
        block = weights.get("block_structure")
        facts.update(
            scheme=qc.get("format"),
            weight_bits=weights.get("num_bits"),
            group_size="x".join(map(str, block)) if block else weights.get("group_size"),
        )
    return facts


@register_quant_method("prequantized")
class Prequantized(QuantMethod):
    """params: id (Hub id or local directory), format (awq | gptq | fp8 | compressed-tensors),
    revision."""

    format = None  # the entry's own `format`, verified against config.json at run time
    settings = {
        "id": {"type": "string", "description": "prequantized: Hub repo id or local directory"},
        "revision": {"type": "string", "description": "prequantized: Hub revision"},
        "format": {
            "type": "string",
            "enum": list(dict.fromkeys(QUANT_METHOD_FORMATS.values())),
            "description": "prequantized: the checkpoint's format (verified against config.json "
            "quantization_config.quant_method)",
        },
    }
    required_settings = ("id", "format")
    packages = ("transformers", "huggingface_hub")

    def quantize(self, src, dst, calibration):
        declared = self.params["format"]
        path = resolve_checkpoint(self.params["id"], self.params.get("revision"))
        config = json.loads((path / "config.json").read_text())
        facts = detect(config)
        if facts["format"] != declared:
            raise PrequantizedError(
                f"{self.params['id']}: config.json says quant_method {facts['quant_method']!r} "
                f"(format {facts['format']!r}) but the config entry declares format "
                f"{declared!r}: set `format: {facts['format']}`"
            )
        model_config = json.loads((Path(src) / "config.json").read_text())
        mismatched = {
            k: (config.get(k), model_config.get(k))
            for k in ARCH_KEYS
            if config.get(k) != model_config.get(k)
        }
        if mismatched:
            raise PrequantizedError(
                f"{self.params['id']} is not a quantization of this model: (checkpoint, model) "
                f"differ in {mismatched}; pair them with `cells:` or a narrower `sweep:`"
            )
        facts.pop("format")
        return {"path": str(path), "source_id": self.params["id"], **facts, "calibration": None}
