"""Hugging Face Transformers, in this process (`generate()`, batch 1)."""

from quantbench.engines.transformers.engine import TransformersEngine, resolve_device

__all__ = ["TransformersEngine", "resolve_device"]
