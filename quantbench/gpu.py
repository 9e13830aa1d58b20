"""What the GPUs report through NVML (nvidia-ml-py): the energy counter, the memory each process
holds, and the device-wide memory in use. Every reader returns None where there is no NVML or no
such figure (a CPU run, a driver or container that hides it), so a missing figure stays missing
rather than becoming a wrong one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def listed_gpus() -> int | None:
    """How many GPUs `nvidia-smi -L` lists; None where there is no working nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return None
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def has_gpu() -> bool:
    return listed_gpus() is not None


def _handles():
    import pynvml

    pynvml.nvmlInit()
    return pynvml, [
        pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
    ]


def energy_j() -> float | None:
    """The GPUs' total-energy counters summed, in joules (Volta and later)."""
    try:
        nvml, handles = _handles()
        return sum(nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles) / 1000.0
    except Exception:  # noqa: BLE001 - no NVML, no counter: the figure is simply absent
        return None


def joules_since(start_j: float | None) -> float | None:
    """The energy counter's rise since a reading `start_j`; None where either reading is."""
    end_j = energy_j()
    return None if start_j is None or end_j is None else end_j - start_j


def device_memory_used_mb() -> float | None:
    """Memory in use on every visible GPU, whoever holds it (other processes included)."""
    try:
        nvml, handles = _handles()
        return sum(nvml.nvmlDeviceGetMemoryInfo(h).used for h in handles) / 2**20
    except Exception:  # noqa: BLE001
        return None


def process_memory_mb(pids: set[int]) -> float | None:
    """GPU memory held by the processes ``pids`` (an engine's server and its workers), summed
    over the GPUs; None when NVML lists none of them (no GPU, or a PID namespace NVML's PIDs do
    not match)."""
    try:
        nvml, handles = _handles()
        total, seen = 0, False
        for h in handles:
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(h):
                if proc.pid in pids and proc.usedGpuMemory is not None:
                    total += proc.usedGpuMemory
                    seen = True
        return total / 2**20 if seen else None
    except Exception:  # noqa: BLE001
        return None


def group_pids(pgid: int) -> set[int]:
    """Every process in process group ``pgid`` (a server started in its own session)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                pids.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def rss_mb(pids: set[int]) -> float:
    """Resident memory of ``pids`` (a CPU build's footprint)."""
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_kb / 1024
