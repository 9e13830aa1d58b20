"""Run an inference server as a context manager and never leave an orphan behind.

The server starts in its own session (``setsid``), so it and every worker it forks (vLLM's
engine core and TP workers, SGLang's schedulers) share one process group that is stopped as a
whole: SIGTERM to the group, a grace period, SIGKILL to the group, then a check that no live
process is left in it. That runs on normal exit, on any exception, on SIGINT/SIGTERM delivered
to this (parent) process, and from ``atexit``. If the parent is SIGKILLed none of that can run;
on Linux, for a single-threaded parent, the kernel then sends SIGTERM to the server's leader
(``PR_SET_PDEATHSIG``), which vLLM and SGLang answer by stopping their own workers.
While a server runs, this process is a child subreaper, so workers orphaned by a dying
leader are re-parented to it and reaped here instead of lingering as zombies under a container
init that does not reap.

Processes that call ``setsid`` themselves leave the group and are out of reach; neither vLLM
nor SGLang does.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections import deque
from pathlib import Path
from typing import Self

from quantbench.engines.procgroup import (
    LIBC,
    Subreaper,
    free_port,
    listening_inodes,
    pdeathsig_preexec,
    reap_and_list_alive,
    socket_inodes,
)

__all__ = ["ManagedServer", "ServerError", "ServerStartError", "Terminated", "free_port"]

PORT_PLACEHOLDER = "{port}"
_LOG_TAIL_LINES = 40
# No proxy: an http_proxy in the environment must not intercept health checks on localhost.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """The server could not be managed (start failed, processes survived SIGKILL)."""


class ServerStartError(ServerError):
    """The server exited or timed out before its health endpoint answered 200."""


class Terminated(SystemExit):
    """SIGTERM arrived while a server ran. A SystemExit, so ``except Exception`` cannot swallow
    it and an uncaught one exits with the shell's convention, 128 + signal number."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


class ManagedServer:
    """Start ``cmd``, wait for ``GET http://host:port{health_path}`` to answer 200, stop the
    whole process group on exit. ``{port}`` in ``cmd`` is replaced by the (chosen) port.

    Timings (``time.time()`` epoch seconds, durations in seconds): ``spawned_at``,
    ``ready_at``, ``stopped_at``, ``startup_s`` (spawn to first healthy answer) and ``stop_s``.
    """

    def __init__(
        self,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        health_path: str = "/health",
        ready_timeout_s: float = 600,
        log_path: str | os.PathLike,
        grace_s: float = 30,
        poll_interval_s: float = 0.5,
        cwd: str | os.PathLike | None = None,
    ):
        self.cmd_template = list(cmd)
        self.env = dict(env or {})
        self.host = host
        self.port = port
        self.health_path = health_path if health_path.startswith("/") else "/" + health_path
        self.ready_timeout_s = ready_timeout_s
        self.log_path = Path(log_path)
        self.grace_s = grace_s
        self.poll_interval_s = poll_interval_s
        self.cwd = cwd
        self.cmd: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.spawned_at = self.ready_at = self.stopped_at = None
        self.startup_s = self.stop_s = None
        self.returncode: int | None = None
        self._log_file = None
        self._log_offset = 0
        self._t0 = 0.0
        self._old_handlers: dict[int, object] = {}
        self._stopping = False
        self._subreaper = False
        self._lock = threading.Lock()

    # -- public -------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def base_url(self) -> str:
        # A server bound to all interfaces is still reached through loopback.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def timings(self) -> dict:
        return {
            "spawned_at": self.spawned_at,
            "ready_at": self.ready_at,
            "stopped_at": self.stopped_at,
            "startup_s": self.startup_s,
            "stop_s": self.stop_s,
        }

    def log_text(self) -> str:
        """What this run wrote to the log (the file is appended to across runs)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = _LOG_TAIL_LINES) -> str:
        return "\n".join(deque(self.log_text().splitlines(), maxlen=n))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.stop()
        except ServerError as err:
            if exc is None:
                raise
            # Do not replace the exception in flight (a KeyboardInterrupt, a Terminated exit
            # code) with a cleanup failure; make it visible instead.
            warnings.warn(str(err), RuntimeWarning, stacklevel=2)

    def start(self) -> None:
        if self.proc is not None:
            raise ServerError("server already started")
        if self.port is None:
            self.port = free_port(self.host if self.host not in ("0.0.0.0", "") else "127.0.0.1")
        self.cmd = [a.replace(PORT_PLACEHOLDER, str(self.port)) for a in self.cmd_template]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._log_offset = self._log_file.tell()
        # preexec_fn can deadlock if another thread holds a lock at fork time, so the
        # parent-death signal is only armed in a single-threaded parent.
        preexec = None
        if LIBC is not None and threading.active_count() == 1:
            preexec = pdeathsig_preexec(os.getpid(), LIBC)
        try:
            # Armed before the spawn, so no signal can fall between spawn and cleanup.
            self._install_signal_handlers()
            atexit.register(self._atexit)
            Subreaper.acquire(LIBC)
            self._subreaper = True
            self._t0 = time.monotonic()
            self.spawned_at = time.time()
            try:
                self.proc = subprocess.Popen(
                    self.cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=self._log_file,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **self.env},
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=preexec,
                )  # noqa: PLW1509
            except OSError as err:
                raise ServerStartError(f"cannot start {self.cmd[0]!r}: {err}") from err
            self.pgid = self.proc.pid  # a session leader leads its own process group
            self._wait_ready()
        except BaseException:
            # __exit__ does not run when __enter__ raises: clean up here.
            self.stop(_quiet=True)
            raise

    def stop(self, *, _quiet: bool = False) -> None:
        """Stop the whole process group; idempotent. Raises ServerError if any of it survives
        SIGKILL (a process stuck in the kernel)."""
        with self._lock:
            if self._stopping:
                return  # a stop is under way (re-entered from atexit or a signal)
            if self.proc is None or self.stopped_at is not None:
                self._restore()
                return
            self._stopping = True
        t = time.monotonic()
        survivors: list[int] = []
        try:
            survivors = self._terminate_group()
        finally:
            self.stop_s = time.monotonic() - t
            self.stopped_at = time.time()
            self.returncode = self.proc.returncode
            self._restore()
        if survivors and not _quiet:
            raise ServerError(f"processes {survivors} of group {self.pgid} survived SIGKILL")

    # -- internals ----------------------------------------------------------------------------

    def _wait_ready(self) -> None:
        url = self.base_url + self.health_path
        deadline = self._t0 + self.ready_timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerStartError(
                    f"server exited with code {code} before {url} answered 200\n"
                    f"command: {' '.join(self.cmd)}\n"
                    f"--- last {_LOG_TAIL_LINES} lines of {self.log_path} ---\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerStartError(
                    f"server not ready: {url} gave no 200 within {self.ready_timeout_s:g} s\n"
                    f"command: {' '.join(self.cmd)}\n"
                    f"--- last {_LOG_TAIL_LINES} lines of {self.log_path} ---\n{self.log_tail()}"
                )
            try:
                with _OPENER.open(url, timeout=max(0.1, min(5.0, remaining))) as resp:
                    if resp.status == 200:
                        self._check_port_is_ours()
                        self.startup_s = time.monotonic() - self._t0
                        self.ready_at = time.time()
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass  # not listening yet, or 503 while loading
            time.sleep(min(self.poll_interval_s, max(0.0, deadline - time.monotonic())))

    def _check_port_is_ours(self) -> None:
        """The healthy answer must come from the server we started: every socket listening on
        the port belongs to a process of its group. Otherwise another server (one left running
        by an earlier run, say) took the port between our pick and our server's bind, and every
        request would go to it."""
        listeners = listening_inodes(self.port)
        if not listeners:
            return  # no /proc/net here (not Linux), or another network namespace: cannot tell
        ours = socket_inodes(reap_and_list_alive(self.pgid, self.pgid))
        foreign = listeners - ours
        if foreign:
            raise ServerStartError(
                f"port {self.port} answers {self.health_path}, but not from the server we "
                f"started (pid {self.pid}): another process listens on it, e.g. a server left "
                f"running by an earlier run. Stop it (`ss -ltnp` / `lsof -i :{self.port}` names "
                f"it) and run again.\n"
                f"command: {' '.join(self.cmd)}\n"
                f"--- last {_LOG_TAIL_LINES} lines of {self.log_path} ---\n{self.log_tail()}"
            )

    def _terminate_group(self) -> list[int]:
        pgid = self.pgid
        for sig, wait_s in ((signal.SIGTERM, self.grace_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + wait_s
            while True:
                self.proc.poll()  # reap the leader: it is our child, nobody else will
                alive = reap_and_list_alive(pgid, pgid)
                if not alive:
                    self.proc.wait(timeout=5)  # only a zombie can be left of it: reap it
                    return []
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        self.proc.poll()
        return reap_and_list_alive(pgid, pgid)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python only delivers signals to the main thread; atexit still applies
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self._stopping:
            return  # already cleaning up; a second ^C must not abort the cleanup
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    def _restore(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        atexit.unregister(self._atexit)
        if self._subreaper:
            Subreaper.release(LIBC)
            self._subreaper = False
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _atexit(self) -> None:
        # Interpreter shutdown: nobody is left to report a failure to.
        with contextlib.suppress(Exception):
            self.stop(_quiet=True)
