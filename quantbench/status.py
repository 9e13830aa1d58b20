"""The one vocabulary of result statuses and the one key of a cell.

`Status` is a `StrEnum`: a member is its string, so result files, CSVs and old results read
back and compare unchanged (``Status.OK == "ok"``). `CellKey` is a cell, one (model,
quantization, engine) triple, always in that order; `CELL_COLUMNS` are its table columns.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Status(StrEnum):
    """A result's or a row's status."""

    OK = "ok"
    FAILED = "failed"
    # part of a load run's requests failed; the rest were measured
    PARTIAL = "partial"
    # a property of the cell, not a fault: kept, never retried
    UNSUPPORTED = "unsupported"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not_applicable"
    # the report's placeholder for a planned result file that is absent
    NOT_RUN = "not run"


# Statuses that are a property of the cell, not a fault: kept, never retried.
SETTLED = frozenset({Status.OK, Status.UNSUPPORTED, Status.SKIPPED, Status.NOT_APPLICABLE})
# A row status that means part of a measurement failed (a serving run with some requests lost).
FAULTY_ROWS = frozenset({Status.FAILED, Status.PARTIAL})


class CellKey(NamedTuple):
    """One cell of the sweep; `engine` is the engine's config name."""

    model: str
    quantization: str
    engine: str

    @classmethod
    def of(cls, mapping) -> CellKey:
        """The key of a row, a provenance block or a config entry (anything with the three
        fields as keys)."""
        return cls(mapping["model"], mapping["quantization"], mapping["engine"])

    def path(self) -> str:
        """``model/quantization/engine``: the results directory layout and log names."""
        return "/".join(self)


CELL_COLUMNS = list(CellKey._fields)


class MemorySource(StrEnum):
    """Where a peak-memory figure comes from (a row's ``mem_method``)."""

    # the allocator's peak on CUDA: the way the published Qwen3 tables measure
    TORCH_ALLOCATED = "torch.cuda.max_memory_allocated"
    PROCESS_PEAK_RSS = "process_peak_rss"
    # the kernel would not reset the peak: the process's lifetime high-water mark
    PROCESS_PEAK_RSS_LIFETIME = "process_peak_rss_lifetime"
    ENGINE_LOG_KV = "engine log: weights + KV pool bytes per token x request tokens"
    SERVER_RSS = "server process group RSS"
    NOT_MEASURED = "not measured"
    NOT_MEASURED_EXTERNAL = "not measured (external server)"
