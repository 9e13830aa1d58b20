"""Result files: written atomically, each carrying its provenance."""

from __future__ import annotations

import errno
import functools
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from quantbench import __version__


# The workflow's directory (data/, config/schema, rules/, reference/): the source tree this
# package sits in, or, for an installed package, QUANTBENCH_ROOT (rules/common.smk sets it to the
# workflow's basedir, so jobs and the Snakefile read the workflow's own files).
def _workflow_root() -> Path:
    if os.environ.get("QUANTBENCH_ROOT"):
        return Path(os.environ["QUANTBENCH_ROOT"])
    tree = Path(__file__).resolve().parent.parent
    share = Path(sys.prefix, "share", "quantbench")  # pyproject.toml's data-files
    return share if not (tree / "data").is_dir() and share.is_dir() else tree


REPO_ROOT = _workflow_root()


# Test hook standing in for a full disk where no small filesystem can be mounted: a write to a
# path containing this variable's value fails with ENOSPC (tests/test_faults.py).
FAULT_ENOSPC_ENV = "QUANTBENCH_FAULT_ENOSPC"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temp file in the same directory and rename, so readers never see half a file.
    The file gets the mode a plain open() would give it (0644 under the usual umask), not
    mkstemp's 0600: results are read by others on a shared filesystem."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as fh:
            fault = os.environ.get(FAULT_ENOSPC_ENV)
            if fault and fault in str(path):
                raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected)", str(path))
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_figure(fig, path: str | os.PathLike) -> None:
    """A matplotlib figure written like a result file: to a temp file, then renamed (its format
    from the suffix), so no reader sees half a plot."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=110)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


@functools.cache
def _git_state() -> tuple[str | None, bool | None]:
    """The workflow tree's commit and whether it has uncommitted changes to tracked files."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        commit = head.stdout.strip() or None
        if commit is None:
            return None, None
        status = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return commit, dirty
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def _git_commit() -> str | None:
    """`abc1234`, or `abc1234-dirty` when tracked files differ from that commit (as `git
    describe --dirty` writes it): the result then came from code no commit holds."""
    commit, dirty = _git_state()
    return f"{commit}-dirty" if commit and dirty else commit


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
        "git_dirty": _git_state()[1],
        "settings": settings or {},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
