"""Serving engines, one registered class each.

An engine loads a checkpoint (in-process, or by starting a server) and generates for the
benchmark scenarios; `ENGINES[name]` is the class. A new engine is one decorated class.
"""

from __future__ import annotations

ENGINES: dict[str, type] = {}


def register_engine(name: str):
    def wrap(cls):
        cls.name = name
        ENGINES[name] = cls
        return cls

    return wrap


def get_engine(name: str):
    from quantbench.engines import served, transformers_engine  # noqa: F401  (registers)

    try:
        return ENGINES[name]
    except KeyError:
        raise KeyError(f"unknown engine {name!r}; known: {sorted(ENGINES)}") from None
