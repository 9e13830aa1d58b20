"""Serving engines, one package each, found by looking: every subpackage of this package
registers its engine class with `@register_engine(name)`. An engine package owns its launch
flags, start-up log facts, own benchmark client and the checkpoint formats it loads; the class
declares them (quantbench.engines.base.Engine). Adding an engine is adding a package here, its
environment file and a config entry (docs/adding-an-engine.md).

`ENGINES[name]` is the class; `get_engine(name)` imports the packages first. compat.py, plan.py
and the config schema read their engine facts from here (`compat_rows`, `weightless_engines`,
`settings_schemas`).
"""

from __future__ import annotations

import importlib
import pkgutil

ENGINES: dict[str, type] = {}
_discovered = False


def register_engine(name: str):
    def wrap(cls):
        cls.name = name
        ENGINES[name] = cls
        return cls

    return wrap


def discover() -> dict[str, type]:
    """Import every engine package (a subpackage of quantbench.engines); each registers itself."""
    global _discovered
    if not _discovered:
        for info in pkgutil.iter_modules(__path__):
            if info.ispkg:
                importlib.import_module(f"{__name__}.{info.name}")
        _discovered = True
    return ENGINES


def get_engine(name: str):
    try:
        return discover()[name]
    except KeyError:
        raise KeyError(f"unknown engine {name!r}; known: {sorted(ENGINES)}") from None


def compat_rows() -> dict[tuple[str, str], list[str]]:
    """(checkpoint format, engine) -> kernels, the default first, as every engine declares."""
    return {
        (fmt, name): list(kernels)
        for name, cls in sorted(discover().items())
        for fmt, kernels in cls.compat.items()
    }


def weightless_engines() -> frozenset[str]:
    """Engines that build a quantized model's tensors themselves (random weights)."""
    return frozenset(name for name, cls in discover().items() if cls.weightless)


def settings_schemas() -> dict[str, dict]:
    """Each engine's config block as a JSON schema (its declared settings)."""
    return {name: cls.settings_schema() for name, cls in sorted(discover().items())}
