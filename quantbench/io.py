"""Result files: written atomically, each carrying its provenance."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from quantbench import __version__

REPO_ROOT = Path(__file__).resolve().parent.parent


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temp file in the same directory and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def device_name(device: str | None = None) -> str:
    """The accelerator's marketing name, or the CPU's model name."""
    try:
        import torch

        if (device is None or str(device).startswith("cuda")) and torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "CPU: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU: " + (platform.processor() or platform.machine())


def provenance(
    *,
    model: str,
    quantization: str | None,
    engine: str | None,
    engine_version: str | None = None,
    device: str | None = None,
    settings: dict | None = None,
) -> dict:
    """Who produced a result, with what, where and when."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {
        "model": model,
        "quantization": quantization,
        "engine": engine,
        "engine_version": engine_version,
        "torch_version": torch_version,
        "device_name": device_name(device),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "quantbench_version": __version__,
        "git_commit": _git_commit(),
        "settings": settings or {},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
