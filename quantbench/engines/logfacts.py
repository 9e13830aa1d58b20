"""Start-up facts that an inference server prints in its log.

Every fact is a plain dict (JSON-ready)::

    {"value": 256800, "min": 256800, "max": 257664, "count": 8, "unit": "tokens",
     "method": "log: vllm 'GPU KV cache size: N tokens' (v1/core/kv_cache_utils.py)"}

Tensor-parallel workers each print their own line, so every figure keeps ``min``, ``max`` and
``count``. ``value`` is the *min* for capacities (the scheduler admits against the smallest
worker: vLLM shrinks every worker to the minimum block count) and the *max* for memory use and
durations (the slowest / fullest worker bounds the engine). Facts a log does not contain are
absent, never guessed. Derived figures say so in ``method``.

Each engine's parser lives in its package (`parse_log` of the engine class, e.g.
quantbench/engines/vllm/logfacts.py); this module holds what they share. An engine without a
parser reports no log facts (never an error).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["parse_log", "strip_ansi"]

# CSI / OSC escape sequences: vLLM colours its level names and prints a coloured logo.
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*(?:\x07|\x1b\\))")
_N = r"(\d[\d,]*(?:\.\d+)?)"  # a number, thousands separators allowed
_SECS = r"\s*s(?:ecs?|econds)?\b"  # "12.3 s", "12.3s", "12 secs", "12.3 seconds"


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _lines(text: str) -> list[str]:
    # tqdm bars rewrite one line with "\r"; treat each rewrite as its own line.
    return re.split(r"\r\n|\r|\n", strip_ansi(text))


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def _fact(
    values: list[float],
    unit: str,
    method: str,
    pick: Callable = max,
    integer: bool = False,
    **extra,
) -> dict:
    conv = int if integer else float
    fact = {
        "value": conv(pick(values)),
        "min": conv(min(values)),
        "max": conv(max(values)),
        "count": len(values),
        "unit": unit,
        "method": method,
    }
    fact.update(extra)
    return fact


def _collect(lines: Iterable[str], pattern: re.Pattern, group: int = 1) -> list[float]:
    out = []
    for line in lines:
        for m in pattern.finditer(line):
            if m.group(group) is not None:
                out.append(_num(m.group(group)))
    return out


def parse_log(engine: str, text: str) -> dict:
    """Facts from a start-up log of ``engine``, by its package's parser."""
    from quantbench.engines import get_engine

    try:
        parser = get_engine(engine.lower()).parse_log
    except (KeyError, AttributeError):
        raise ValueError(f"no log parser for engine {engine!r}") from None
    return parser(text)
