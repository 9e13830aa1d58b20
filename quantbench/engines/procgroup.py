"""The process-level plumbing of a managed server (quantbench.engines.server): its process group's
members, reaping them, this process as a child subreaper, the parent-death signal, and which
processes listen on a port."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
from pathlib import Path

LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free now. Another process may take it before the server binds
    it; the server then fails to start and says so in its log."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[tuple[int, str, int]]:
    """(pid, state, ppid) of every process in process group ``pgid``, zombies included."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: all we can ask is whether the group exists
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [(pgid, "?", -1)]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            members.append((int(entry.name), fields[0], int(fields[1])))
    return members


def reap_and_list_alive(pgid: int, leader: int | None = None) -> list[int]:
    """Reap the group's zombies that are our children; return the group's live pids.

    Zombies hold no memory or GPU but keep the group "existing" for ``killpg(pgid, 0)``. Orphans
    are re-parented to init, which in a container often never reaps them; as a child subreaper
    we adopt them instead (see ``Subreaper``) and reap them here. The ``leader`` is left to
    its Popen, which needs its exit status."""
    alive = []
    for pid, state, ppid in group_members(pgid):
        if state in ("Z", "X"):
            if ppid == os.getpid() and pid != leader:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        else:
            alive.append(pid)
    return alive


class Subreaper:
    """Make this process a child subreaper (Linux >= 3.4) while any server runs, so the server's
    orphaned workers are re-parented to us rather than to a non-reaping init."""

    _PR_SET, _PR_GET = 36, 37
    _users = 0
    _previous = 0
    _lock = threading.Lock()

    @classmethod
    def acquire(cls, libc) -> None:
        with cls._lock:
            if cls._users == 0 and libc is not None:
                value = ctypes.c_int(0)
                libc.prctl(cls._PR_GET, ctypes.byref(value), 0, 0, 0)
                cls._previous = value.value
                libc.prctl(cls._PR_SET, 1, 0, 0, 0)
            cls._users += 1

    @classmethod
    def release(cls, libc) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0 and libc is not None:
                libc.prctl(cls._PR_SET, cls._previous, 0, 0, 0)


def listening_inodes(port: int) -> set[int] | None:
    """Socket inodes listening on TCP `port` (any address), from /proc/net/tcp{,6}; None where
    that cannot be read."""
    inodes: set[int] = set()
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found_table = True
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(int(fields[9]))
    return inodes if found_table else None


def socket_inodes(pids: list[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def pdeathsig_preexec(parent_pid: int, libc):
    def preexec():  # runs in the child between fork and exec: keep it minimal
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec
