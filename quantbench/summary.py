"""The batch-1 summary of a cell at one input length: mean and sample standard deviation over
the repeats that succeeded. One computation, read by the result file (`single.json`'s
``summary``), the speed table and the comparison with the published tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from quantbench.status import Status

# Figures a successful batch-1 row has (a hand-built table may carry fewer).
FIGURES = ("speed_tok_s", "decode_speed_tok_s", "ttft_ms", "tpot_ms", "peak_mem_mb")
# Figures only some engines record (Transformers on CUDA marks prefill's end and the last token).
OPTIONAL_FIGURES = ("decode_peak_mem_mb", "end_mem_mb")


def _present(value) -> bool:
    """A value a row has: not absent, None or NaN (a CSV's empty cell)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


@dataclass
class Spread:
    """Mean and sample standard deviation (0 for one repeat: nothing to spread over)."""

    mean: float
    std: float

    @classmethod
    def of(cls, values: list) -> Spread:
        vals = np.array([v if _present(v) else np.nan for v in values], dtype=float)
        vals = vals[~np.isnan(vals)]
        if not len(vals):
            return cls(math.nan, math.nan)
        return cls(float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)


@dataclass
class LengthSummary:
    """One input length of one cell. A length with no successful repeat keeps the status and
    reason of its first row, and no figures."""

    input_len: int
    n: int  # rows (repeats) planned
    n_ok: int  # of which succeeded
    status: str
    reason: str | None = None
    figures: dict[str, Spread] | None = None  # FIGURES (+ OPTIONAL_FIGURES all ok rows have)
    peak_mem_mb_max: float | None = None  # the highest peak over the repeats
    mem_method: str | None = None
    cached_tokens: int | None = None  # over every row of the length, failed ones included
    cache_hits: int | None = None
    cache_unreported: int | None = None

    def spread(self, figure: str) -> Spread:
        return (self.figures or {}).get(figure, Spread(math.nan, math.nan))

    def as_dict(self) -> dict:
        """The flat form the result file keeps: ``<figure>`` and ``<figure>_std`` per figure."""
        out = {k: v for k, v in asdict(self).items() if k != "figures" and v is not None}
        if self.status != Status.OK:  # a failed length says why, even without a reason
            out.setdefault("reason", self.reason)
        for name, s in (self.figures or {}).items():
            out[name], out[name + "_std"] = s.mean, s.std
        return out


def summarize_lengths(rows: Iterable[Mapping]) -> list[LengthSummary]:
    """Per input length (ascending) of one cell's batch-1 rows."""
    rows = list(rows)
    out = []
    for input_len in sorted({r["input_len"] for r in rows}):
        group = [r for r in rows if r["input_len"] == input_len]
        good = [r for r in group if r["status"] == Status.OK]
        entry = LengthSummary(int(input_len), len(group), len(good), group[0]["status"])
        if not good:
            entry.reason = group[0].get("reason")
            if not _present(entry.reason):
                entry.reason = None
            out.append(entry)
            continue
        entry.status = Status.OK
        cached = [r.get("cached_tokens") for r in group]
        entry.cached_tokens = int(sum(c for c in cached if _present(c)))
        entry.cache_hits = sum(_present(h := r.get("cache_hit")) and bool(h) for r in group)
        entry.cache_unreported = sum(not _present(c) for c in cached)
        names = [k for k in FIGURES if any(k in r for r in good)]
        names += [k for k in OPTIONAL_FIGURES if all(_present(r.get(k)) for r in good)]
        entry.figures = {k: Spread.of([r.get(k) for r in good]) for k in names}
        peaks = [p for r in good if _present(p := r.get("peak_mem_mb"))]
        entry.peak_mem_mb_max = float(max(peaks)) if peaks else math.nan
        entry.mem_method = good[0].get("mem_method")
        out.append(entry)
    return out
