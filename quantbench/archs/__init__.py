"""Hugging Face ``config.json`` contents of the Qwen3 family, vendored because the Hub is not
reachable from every machine that runs the pipeline (roofline numbers need only the config).

Each ``<name>.json`` is the published ``Qwen/<name>/config.json`` (original April-2025 release,
not the 2507 refresh, which changed ``max_position_embeddings`` and ``rope_theta``). Where each
was checked is recorded in ``SOURCES``; ``PUBLISHED_PARAMS`` holds the model-card parameter counts
that ``tests/test_roofline.py`` compares an analytic count against.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

_DIR = Path(__file__).resolve().parent

# Public copies of each config.json that the vendored file was compared with, field by field.
SOURCES: dict[str, list[str]] = {
    "Qwen3-0.6B": [
        "model-info report of /models/opensource/Qwen3-0.6B/config.json (raw json dump)",
        "Rust test fixture QWEN3_06B_CONFIG; comment cites huggingface.co/Qwen/Qwen3-0.6B/raw/main",
    ],
    "Qwen3-1.7B": [
        "doc quoting huggingface.co/Qwen/Qwen3-1.7B/blob/main/config.json (4.51.0 format)",
        # Its safetensors header counts 1,720,574,976 parameters, as param_count() does.
        "audit of a 1.7B derivative re-saved by transformers 5.17 (same architecture values)",
    ],
    "Qwen3-4B": [
        "citsjtu2020/LLM-Prof sglang/Model_Config.md (architecture values identical)",
        "Z-Image text-encoder loader embedding the Qwen3-4B config.json verbatim",
        # LLM-Prof's copy has use_cache=false and transformers_version 4.51.2; the loader copy has
        # use_cache=true / 4.51.0. Neither field changes any computation; the latter is kept.
    ],
    "Qwen3-8B": [
        "citsjtu2020/LLM-Prof sglang/Model_Config.md",
        "Qwen3-Reranker-8B config.json (same backbone; differs only in vocab_size)",
    ],
    "Qwen3-14B": [
        "citsjtu2020/LLM-Prof sglang/Model_Config.md",
        "Qwen3-14B-FP8 config.json quoted in two test suites (plus quantization_config)",
    ],
    "Qwen3-32B": [
        "citsjtu2020/LLM-Prof sglang/Model_Config.md",
        "curl of huggingface.co/Qwen/Qwen3-32B/resolve/main/config.json recorded in an agent log",
    ],
    "Qwen3-30B-A3B": [
        "citsjtu2020/LLM-Prof sglang/Model_Config.md",
        "Qwen3-30B-A3B-GPTQ-Int4 config.json dump (plus quantization_config)",
    ],
    "Qwen3-235B-A22B": [
        "two independent hard-coded copies of Qwen/Qwen3-235B-A22B config.json (LiteLLM shims)",
    ],
}

# Model-card figures ("Number of Parameters", "Non-Embedding", "activated"), in billions.
# Qwen's non-embedding figure excludes both the embedding table and an untied lm_head.
PUBLISHED_PARAMS: dict[str, dict[str, float]] = {
    "Qwen3-0.6B": {"total": 0.6, "non_embedding": 0.44},
    "Qwen3-1.7B": {"total": 1.7, "non_embedding": 1.4},
    "Qwen3-4B": {"total": 4.0, "non_embedding": 3.6},
    "Qwen3-8B": {"total": 8.2, "non_embedding": 6.95},
    "Qwen3-14B": {"total": 14.8, "non_embedding": 13.2},
    "Qwen3-32B": {"total": 32.8, "non_embedding": 31.2},
    "Qwen3-30B-A3B": {"total": 30.5, "non_embedding": 29.9, "active": 3.3},
    "Qwen3-235B-A22B": {"total": 235.0, "non_embedding": 234.0, "active": 22.0},
}


def list_archs() -> list[str]:
    """Names of the vendored configs, e.g. ``Qwen3-8B``."""
    return sorted(p.stem for p in _DIR.glob("*.json"))


@cache
def _load(name: str) -> str:
    path = _DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"unknown arch {name!r}; known: {', '.join(list_archs())}")
    return path.read_text()


# Quantized checkpoints (Qwen3-8B-AWQ, Qwen3-32B-FP8, Qwen3-30B-A3B-GPTQ-Int4) share the base
# architecture; their config.json only adds a quantization_config.
_QUANT_SUFFIX = re.compile(r"-(FP8|AWQ|GPTQ-Int[48])$", re.IGNORECASE)


def load_arch(name: str) -> dict:
    """The config.json of ``name`` as a fresh dict.

    Accepts ``Qwen3-8B``, ``Qwen/Qwen3-8B`` and quantized repo names such as ``Qwen3-8B-AWQ``.
    """
    return json.loads(_load(_QUANT_SUFFIX.sub("", name.split("/")[-1])))
