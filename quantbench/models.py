"""Model sources: `tiny` (generated offline), `trained` (the tiny Qwen3 trained offline on the
shipped tasks' facts, quantbench.trained), `hf` (Hub id or local path), `dummy` (real config,
random weights). Each materialised model is a directory plus a manifest (`model.json`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from quantbench.io import write_json
from quantbench.model_parts import (  # noqa: F401 - the tokenizer's names, as importers use them
    CHAT_TEMPLATE,
    CORPUS,
    SPECIAL_TOKENS,
    arch_config,
    build_tokenizer,
)

# Qwen3 architecture scaled down. Linear input sizes are multiples of 128 so group-128
# quantization schemes apply to every layer.
TINY_ARCH = {
    "model_type": "qwen3",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 4096,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}


class ModelSourceError(RuntimeError):
    pass


def resolve_arch(name_or_path: str) -> dict:
    """A shipped architecture (quantbench/archs/<name>.json) or a config.json path."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return json.loads(path.read_text())
    from quantbench import archs

    try:
        return archs.load_arch(name_or_path)
    except (FileNotFoundError, KeyError) as err:
        raise ModelSourceError(
            f"unknown architecture {name_or_path!r}: give a config.json path or one of "
            f"{archs.list_archs()}"
        ) from err


def make_tiny(out_dir: Path, *, seed: int, vocab_size: int, arch: dict | str | None) -> dict:
    """Random weights, written: of the tiny Qwen3 (`arch` overriding some of its keys), or of a
    whole real architecture (`arch` a shipped name or config.json path), for quantizers."""
    import torch
    from transformers import AutoModelForCausalLM

    full = resolve_arch(arch) if isinstance(arch, str) else {**TINY_ARCH, **(arch or {})}
    tokenizer = build_tokenizer(vocab_size)
    config = arch_config(full, len(tokenizer))
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"path": str(out_dir), "has_weights": True, "quality_applicable": False}


def make_dummy(out_dir: Path, *, arch_name: str, vocab_size: int) -> dict:
    """Config + tokenizer only: engines build random weights (vLLM/SGLang `--load-format dummy`,
    Transformers from config). Speed and memory are real; quality is not applicable."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    tokenizer = build_tokenizer(vocab_size)
    arch = resolve_arch(arch_name)
    config = arch_config(arch, len(tokenizer))
    config.eos_token_id = tokenizer.eos_token_id
    config.torch_dtype = "bfloat16"
    # vLLM and SGLang pick the model class from `architectures` (no weights name it here).
    config.architectures = arch.get("architectures") or [
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]
    ]
    config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"path": str(out_dir), "has_weights": False, "quality_applicable": False}


def fetch_hf(spec: dict) -> dict:
    """A local directory as is, or a Hub snapshot through huggingface_hub's cache."""
    ident = spec["id"]
    if Path(ident).is_dir():
        return {"path": str(Path(ident).resolve()), "has_weights": True, "quality_applicable": True}
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(ident, revision=spec.get("revision"))
    except (LocalEntryNotFoundError, OSError) as err:
        raise ModelSourceError(
            f"could not download {ident!r} from the Hugging Face Hub "
            f"({type(err).__name__}: {err}). "
            "The Hub is unreachable from this machine: download the model where it is reachable "
            "(`huggingface-cli download` fills the cache) and set HF_HUB_OFFLINE=1, or give a "
            "local directory as the model's `id`."
        ) from err
    return {"path": path, "has_weights": True, "quality_applicable": True}


def materialize(name: str, spec: dict, out_dir: Path) -> dict:
    """Build or fetch model `name` into `out_dir` (weights/ + model.json); returns the manifest."""
    weights = out_dir / "weights"
    if weights.exists():
        shutil.rmtree(weights)
    source = spec["source"]
    vocab = spec.get("vocab_size", 4096)
    if source == "tiny":
        facts = make_tiny(
            weights, seed=spec.get("seed", 0), vocab_size=vocab, arch=spec.get("arch")
        )
    elif source == "trained":
        from quantbench.trained import make_trained

        facts = make_trained(weights, spec)
    elif source == "dummy":
        facts = make_dummy(weights, arch_name=spec["arch"], vocab_size=vocab)
    elif source == "hf":
        facts = fetch_hf(spec)
    else:  # the schema rejects this first
        raise ModelSourceError(f"models.{name}.source: unknown source {source!r}")
    manifest = {"name": name, "source": source, **facts, "spec": spec}
    write_json(out_dir / "model.json", manifest)
    return manifest
