"""A job never outlives its Snakemake, and no two measurements share a device.

* ``watch_snakemake()`` forks a small watcher process at the start of a job. It records the
  job's ancestors up to the nearest Snakemake process (the main process locally, the job-step
  process on a cluster) with their start times, and SIGTERMs the job when one of them is gone:
  Snakemake SIGKILLed, or killed with its terminal. The job's SIGTERM handling (``Terminated``,
  and ManagedServer's own handler while a server runs) then stops the server's process group on
  the way out, so nothing is left running. A watcher process rather than a thread: a thread in
  the job would disarm ManagedServer's parent-death signal (armed only in a single-threaded
  parent). The watcher dies with the job (PR_SET_PDEATHSIG, and it checks its parent).
* ``device_lock()`` takes an exclusive ``flock`` per device (each visible GPU, or the host's
  CPU, or an external endpoint) in ``$QUANTBENCH_LOCK_DIR`` (default ``/tmp/quantbench-locks``),
  keyed by host name. A second measurement on a held device waits ``QUANTBENCH_LOCK_WAIT_S``
  (default 30 s: an interrupted job may still be stopping its server) and then fails with
  ``DeviceBusy``, which the job records as a failed cell; it is retried on the next run.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

LOCK_DIR_ENV = "QUANTBENCH_LOCK_DIR"
LOCK_WAIT_ENV = "QUANTBENCH_LOCK_WAIT_S"
DEFAULT_LOCK_DIR = "/tmp/quantbench-locks"
_PR_SET_PDEATHSIG = 1


class DeviceBusy(RuntimeError):
    """Another measurement holds the device."""


class JobTerminated(SystemExit):
    """SIGTERM reached a job (Snakemake gone, scancel, a forwarded Ctrl-C): a SystemExit, so
    ``except Exception`` around a scenario cannot swallow it and context managers clean up."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


# -- the job's lifetime ---------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) of `pid`, or None if it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def _is_snakemake(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    head = [os.path.basename(a.decode(errors="replace")) for a in argv[:3]]
    return "snakemake" in head or any(
        a == b"-m" and b == b"snakemake" for a, b in zip(argv, argv[1:], strict=False)
    )


def ancestors_to_snakemake() -> list[tuple[int, int]]:
    """(pid, start time) of this process's ancestors up to and including the nearest Snakemake
    process; just the parent when no Snakemake is among them (a job run by hand)."""
    chain: list[tuple[int, int]] = []
    pid = os.getppid()
    while pid > 1:
        st = _stat(pid)
        if st is None:
            break
        chain.append((pid, st[1]))
        if _is_snakemake(pid):
            return chain
        pid = st[0]
    return chain[:1]


def _watch(job: int, chain: list[tuple[int, int]], interval_s: float) -> None:
    """The watcher's loop (in the forked child)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the job's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    while True:
        if os.getppid() != job:
            return  # the job is gone
        gone = [pid for pid, start in chain if (_stat(pid) or (0, None))[1] != start]
        if gone:
            os.kill(job, signal.SIGTERM)
            with contextlib.suppress(Exception):
                print(
                    f"quantbench: Snakemake (pid {gone[0]}) is gone: this job stops",
                    file=sys.stderr,
                    flush=True,
                )
            # Give it time to stop its server (ManagedServer: 30 s grace, then SIGKILL).
            deadline = time.monotonic() + 90
            while os.getppid() == job and time.monotonic() < deadline:
                time.sleep(0.5)
            if os.getppid() == job:
                os.kill(job, signal.SIGKILL)
            return
        time.sleep(interval_s)


def watch_snakemake(interval_s: float = 1.0) -> int | None:
    """Fork the watcher (see the module docstring); returns its pid, or None where /proc is
    missing. Call it once, early in the job, before threads are started."""
    if not Path("/proc/self/stat").exists():
        return None
    chain = ancestors_to_snakemake()
    if not chain:
        return None
    job = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: no Python-level cleanup, no flushing of the job's buffers
        _watch(job, chain, interval_s)
    finally:
        os._exit(0)


def _on_sigterm(signum, frame) -> None:
    raise JobTerminated(signum)


def start_job() -> None:
    """What every job does first: SIGTERM becomes a clean exit, and the watcher runs."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(ValueError):  # not the main thread: no handler, still watched
            signal.signal(signal.SIGTERM, _on_sigterm)
        watch_snakemake()


# -- one measurement per device -------------------------------------------------------------


def _gpu_indices() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    from quantbench.gpu import listed_gpus

    n = listed_gpus()
    return [str(i) for i in range(n or 0)] or ["all"]


def device_keys(engine) -> list[str]:
    """The devices a measurement with `engine` occupies: its GPUs, the host's CPU, or (the
    `openai` engine) the endpoint it measures."""
    base_url = (getattr(engine, "settings", None) or {}).get("base_url")
    if getattr(engine, "name", None) == "openai" and base_url:
        return ["endpoint-" + (urlsplit(base_url).netloc or base_url).replace(":", "_")]
    device = str(getattr(engine, "device", None) or "cpu")
    if device.startswith("cuda"):
        return [f"gpu{i}" for i in _gpu_indices()]
    return ["cpu"]


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)


@contextlib.contextmanager
def device_lock(keys: list[str], holder: str, wait_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on every device in `keys` for the body, or raise DeviceBusy."""
    if wait_s is None:
        wait_s = float(os.environ.get(LOCK_WAIT_ENV, 30))
    directory = lock_dir()
    if not directory.exists():
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            directory.chmod(0o1777)  # shared by every user of the host, like /tmp
    host = socket.gethostname()
    fds: list[int] = []
    try:
        for key in sorted(set(keys)):
            path = directory / f"{host}-{key}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            fds.append(fd)
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        other = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                        raise DeviceBusy(
                            f"device {key} on {host} is busy: another measurement holds "
                            f"{path} ({other or 'unknown holder'}); two at once would "
                            f"disturb each other's timings. Let it finish or stop it; this "
                            f"cell is measured again on the next run"
                        ) from None
                    time.sleep(0.5)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, {holder}, since {time.ctime()}\n".encode(), 0)
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing releases the flock


def job_processes() -> list[int]:
    """The running jobs' processes, seen from Snakemake's main process: its children (a job's
    Python, or the shell that runs it, whose children in the same process group count too)."""
    pids = []
    for task in Path("/proc/self/task").glob("*"):
        try:
            pids += [int(k) for k in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    for pid in list(pids):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() in ("bash", "sh", "dash"):
                kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                pids += [int(k) for k in kids if os.getpgid(int(k)) == os.getpgid(pid)]
        except (OSError, ValueError):
            continue
    return pids


def forward_sigint_to_jobs() -> None:
    """Ctrl-C (or SIGINT to Snakemake's PID alone) stops the running jobs now (they stop their
    servers), then Snakemake handles the interrupt as usual. Without this, SIGINT to
    Snakemake's PID alone left the running job to finish."""

    def forward(signum, frame):
        for pid in job_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, forward)


def unwritable(results: str) -> str | None:
    """Why `results` (or a directory in it) cannot be written, with the fix; None if it can."""
    root = Path(results)
    where = root if root.exists() else Path(".")
    dirs = [where]
    if root.exists():
        for d, sub, _ in os.walk(root):
            depth = len(Path(d).relative_to(root).parts)
            sub[:] = [s for s in sub if depth < 4 and s not in ("weights", "checkpoint")]
            dirs += [Path(d, s) for s in sub]
    for d in dirs:
        if not os.access(d, os.W_OK | os.X_OK):
            why = (
                "read-only file system"
                if os.statvfs(d).f_flag & os.ST_RDONLY
                else "permission denied"
            )
            return (
                f"{d}/ is not writable ({why}): the sweep could not record its results. "
                f"Make it writable (chmod -R u+w {d}, or remount it read-write) or run in "
                f"another directory (snakemake -d DIR)."
            )
    return None


def hook_dag_preparation(workflow, before) -> bool:
    """Call `before(executing)` just before Snakemake prepares its DAG (a private method of
    Snakemake 9's Workflow: False, and nothing hooked, where it is absent)."""
    original = getattr(workflow, "_prepare_dag", None)
    if original is None:
        return False

    def prepare(*args, **kwargs):
        before(workflow.executor_plugin is not None)
        return original(*args, **kwargs)

    workflow._prepare_dag = prepare
    return True
