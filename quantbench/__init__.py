"""quantbench: what quantizing an LLM costs in quality and buys in speed and memory, per engine."""

__version__ = "0.1.0"
