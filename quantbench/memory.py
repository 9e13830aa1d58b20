"""Peak memory over a measurement, with the method named beside the figure.

CUDA: `torch.cuda.max_memory_allocated` (what the published Transformers memory column uses).
CPU: the process's peak RSS (VmHWM), reset before each measurement through
/proc/self/clear_refs where the kernel allows it, else the lifetime peak (named so).
"""

from __future__ import annotations

import resource
from pathlib import Path


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
        self.method = "torch.cuda.max_memory_allocated" if self.cuda else "process_peak_rss"

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.method = "process_peak_rss"
        except OSError:
            self.method = "process_peak_rss_lifetime"

    def read(self) -> dict:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            kb = _vm_hwm_kb() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            mb = kb / 1024
        return {"peak_mem_mb": mb, "mem_method": self.method}

    def release(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
