"""When each chunk arrived and each request left: the kernel's receive timestamps of the socket
(``SO_TIMESTAMPNS``) read through aiohttp's connection, and aiohttp's trace callbacks for the send
and connect times (quantbench.client.stream's docstring gives the definitions)."""

from __future__ import annotations

import functools
import socket
import struct
import threading
import time

import aiohttp
from aiohttp.client_proto import ResponseHandler

perf = time.perf_counter

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value where Python lacks it
_TIMESPEC = struct.Struct("qq")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)


def realtime_offset_ns(samples: int = 20) -> int:
    """CLOCK_REALTIME - perf_counter's clock (CLOCK_MONOTONIC), from the tightest bracket.
    Both run at the same (NTP-disciplined) rate, so the offset only moves on a clock step."""
    best = None
    for _ in range(samples):
        m1 = time.perf_counter_ns()
        r = time.clock_gettime_ns(time.CLOCK_REALTIME)
        m2 = time.perf_counter_ns()
        if best is None or m2 - m1 < best[0]:
            best = (m2 - m1, r - (m1 + m2) // 2)
    return best[1]


_stamp_keeper: list[socket.socket] = []


@functools.cache
def kernel_stamps_available() -> bool:
    """Does this kernel put SO_TIMESTAMPNS receive stamps on TCP reads? Probed on a loopback
    connection, once per process. Linux turns receive stamping on lazily — the first socket to
    ask schedules it on a workqueue (`net_enable_timestamp`), so reads right after may carry no
    stamp — and off when the last such socket closes. The probe waits until a read is stamped
    and keeps its socket open for the process, so stamping stays on from the first request."""
    if not hasattr(socket.socket, "recvmsg"):
        return False
    try:
        server = socket.create_server(("127.0.0.1", 0))
        probe = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        probe.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    with server, peer:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            peer.sendall(b"x")
            _, anc, _, _ = probe.recvmsg(1, _ANC_SIZE)
            if any(lvl == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS for lvl, kind, _ in anc):
                _stamp_keeper.append(probe)
                return True
            time.sleep(0.005)
    probe.close()
    return False


class _KernelStampedSocket:
    """Stands in for a selector transport's socket: reads with ``recvmsg`` and keeps the
    kernel's receive timestamp of what was read, on perf_counter's clock. Everything else
    goes to the real socket.

    It reads into one preallocated buffer per thread: asyncio asks for 256 KiB per read, and a
    fresh 256 KiB bytes object per read (what ``recv`` does) is an mmap/munmap pair, ~12 us of
    a ~20 us read on this machine."""

    _local = threading.local()

    def __init__(self, sock: socket.socket, offset_ns: int):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._qb_sock = sock
        self._qb_offset_ns = offset_ns
        self.qb_stamp: float | None = None

    @classmethod
    def _buffer(cls, n: int) -> memoryview:
        view = getattr(cls._local, "view", None)
        if view is None or len(view) < n:
            view = cls._local.view = memoryview(bytearray(max(n, 1 << 18)))
        return view

    def recv(self, n: int) -> bytes:
        view = self._buffer(n)
        nbytes, anc, _, _ = self._qb_sock.recvmsg_into([view[:n]], _ANC_SIZE)
        self.qb_stamp = None
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(raw)
                self.qb_stamp = (sec * 1_000_000_000 + nsec - self._qb_offset_ns) / 1e9
        return bytes(view[:nbytes])

    def __getattr__(self, name):
        return getattr(self._qb_sock, name)


class _TimedHandler(ResponseHandler):
    """aiohttp protocol that stamps each socket read: (time, body bytes received so far)."""

    def __init__(self, *a, offset_ns: int | None = None, **kw):
        super().__init__(*a, **kw)
        self.qb_payload = None
        self.qb_marks: list[tuple[float, int]] = []
        self.qb_offset_ns = offset_ns
        self.qb_kernel: _KernelStampedSocket | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        # asyncio's selector transport reads through `_sock.recv`; uvloop's has no `_sock`.
        sock = getattr(transport, "_sock", None)
        if self.qb_offset_ns is not None and isinstance(sock, socket.socket):
            try:
                self.qb_kernel = transport._sock = _KernelStampedSocket(sock, self.qb_offset_ns)
            except OSError:  # no SO_TIMESTAMPNS here: read-time stamps
                self.qb_kernel = None

    @property
    def qb_stamp_source(self) -> str:
        return "kernel" if self.qb_kernel is not None else "read"

    def data_received(self, data: bytes) -> None:
        t = perf()
        if self.qb_kernel is not None and self.qb_kernel.qb_stamp is not None:
            t = min(t, self.qb_kernel.qb_stamp)
        super().data_received(data)
        p = self._payload
        if p is not None:
            if p is not self.qb_payload:  # a new response on this (kept-alive) connection
                self.qb_payload, self.qb_marks = p, []
            self.qb_marks.append((t, p.total_bytes))


class TimedConnector(aiohttp.TCPConnector):
    def __init__(self, *a, kernel_stamps: bool = True, **kw):
        super().__init__(*a, **kw)
        offset = realtime_offset_ns() if kernel_stamps and kernel_stamps_available() else None
        self.qb_offset_ns = offset
        # Private hook; if a future aiohttp drops it we fall back to read-time stamps.
        if hasattr(self, "_factory"):
            self._factory = lambda: _TimedHandler(loop=self._loop, offset_ns=offset)



def _on_chunk_sent(session, ctx, params):
    ctx.trace_request_ctx.send_time = perf()


def _on_headers_sent(session, ctx, params):
    ctx.trace_request_ctx.headers_sent_time = perf()


def _on_conn_new(session, ctx, params):
    r = ctx.trace_request_ctx
    r.connect_time, r.new_connection = perf(), True


def _on_conn_reuse(session, ctx, params):
    r = ctx.trace_request_ctx
    r.connect_time, r.new_connection = perf(), False


def trace_config() -> aiohttp.TraceConfig:
    tc = aiohttp.TraceConfig()

    def wrap(fn):  # aiohttp awaits trace callbacks; a plain coroutine runs synchronously
        async def cb(session, ctx, params):
            fn(session, ctx, params)

        return cb

    tc.on_request_chunk_sent.append(wrap(_on_chunk_sent))
    tc.on_request_headers_sent.append(wrap(_on_headers_sent))
    tc.on_connection_create_end.append(wrap(_on_conn_new))
    tc.on_connection_reuseconn.append(wrap(_on_conn_reuse))
    return tc

