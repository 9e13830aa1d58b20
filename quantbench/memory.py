"""Peak memory over a measurement, with the method named beside the figure.

CUDA: `torch.cuda.max_memory_allocated` over the whole request, and, where the engine marks the
end of prefill, over decode alone (`decode_peak_mem_mb`): prefill's transient activations (the
MLP's gate/up outputs for every prompt token) are the whole-request peak from a few thousand
prompt tokens, while the published Transformers cells sit just above weights + the KV cache of
prompt and generated tokens — the end of decode.
CUDA also: what the run holds once the last token is out (`end_mem_mb`,
`torch.cuda.memory_allocated` then: weights, the whole KV cache, persistent workspaces such as
cuBLAS's), with no transient in it. Decode's peak should exceed it by one layer's K for the
whole context (the KV cache grows by `torch.cat`, which holds old and new tensors at once): that
is the decode peak's measured excess over the published cells (docs/measurements.md).
CPU: the process's peak RSS (VmHWM), reset before each measurement through
/proc/self/clear_refs where the kernel allows it, else the lifetime peak (named so).
"""

from __future__ import annotations

import resource
from pathlib import Path

from quantbench.status import MemorySource


def _vm_hwm_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda")
        self.method = MemorySource.TORCH_ALLOCATED if self.cuda else MemorySource.PROCESS_PEAK_RSS
        self._prefill_peak: int | None = None
        self._end_mb: float | None = None

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._prefill_peak = None
            self._end_mb = None
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.method = MemorySource.PROCESS_PEAK_RSS
        except OSError:
            self.method = MemorySource.PROCESS_PEAK_RSS_LIFETIME

    def mark_prefill_done(self) -> None:
        """Called when the first generated token reaches the host: keep prefill's peak and
        start a decode-only one. The allocator's counters are host-side, so no sync is needed."""
        if self.cuda:
            import torch

            self._prefill_peak = torch.cuda.max_memory_allocated()
            torch.cuda.reset_peak_memory_stats()

    def mark_last_token(self) -> None:
        """Called when the last generated token reaches the host, while the cache is alive."""
        self._end_mb = self.held_mb()

    def read(self) -> dict:
        if not self.cuda:
            kb = _vm_hwm_kb() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return {"peak_mem_mb": kb / 1024, "mem_method": self.method}
        import torch

        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        out = {"peak_mem_mb": peak / 2**20, "mem_method": self.method}
        if self._prefill_peak is not None:
            out["peak_mem_mb"] = max(peak, self._prefill_peak) / 2**20
            out["decode_peak_mem_mb"] = peak / 2**20
        if self._end_mb is not None:
            out["end_mem_mb"] = self._end_mb
            out["end_mem_method"] = "torch.cuda.memory_allocated at the last token"
        return out

    @property
    def prefill_peak_mb(self) -> float | None:
        """The peak up to mark_prefill_done (None before it, or off CUDA)."""
        return None if self._prefill_peak is None else self._prefill_peak / 2**20

    def held_mb(self) -> float | None:
        """What the process holds on the GPU now (None off CUDA)."""
        if not self.cuda:
            return None
        import torch

        return torch.cuda.memory_allocated() / 2**20

    def release(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
