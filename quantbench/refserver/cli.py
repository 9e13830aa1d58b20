"""``python -m quantbench.refserver``: the command line, the listening sockets and the worker
processes; ``serve MODEL ...`` takes ``vllm serve``'s arguments (vllm_cli)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import quantbench.refserver as package
from quantbench.refserver.config import Config
from quantbench.refserver.protocol import Connection
from quantbench.refserver.state import ServerState


def _listen(host: str, port: int, n: int) -> list[socket.socket]:
    """n sockets on one port via SO_REUSEPORT, so the kernel spreads connections over workers."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if n > 1:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
        port = s.getsockname()[1]  # port 0: the rest join the port the first one got
        s.listen(4096)  # 1024 simultaneous connects overflow asyncio's default backlog of 100
        s.setblocking(False)
        socks.append(s)
    return socks


def _serve(sock: socket.socket, cfg: Config) -> None:
    async def main():
        loop = asyncio.get_running_loop()
        srv = ServerState(cfg)
        server = await loop.create_server(lambda: Connection(srv), sock=sock)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    factory = None
    if cfg.uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m quantbench.refserver", description=package.__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 = any free port (printed)")
    ap.add_argument("--model", default="refmodel")
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument(
        "--eos-after", type=int, default=None, help="natural output length when ignore_eos is false"
    )
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--truth-log", default=None, help="JSONL, one line per finished request")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (default: bytes)")
    ap.add_argument(
        "--uvloop",
        action="store_true",
        help="uvloop, if installed: cheaper per chunk, but libuv timers have 1 ms resolution"
        " (a chunk may go up to 1 ms early; the truth log has the real times)",
    )
    ap.add_argument(
        "--prefix-cache", action="store_true", help="serve shared prompt prefixes from a cache"
    )
    ap.add_argument(
        "--cache-report",
        action="store_true",
        help="report usage.prompt_tokens_details.cached_tokens (as vLLM/SGLang can)",
    )
    ap.add_argument("--log-prompts", action="store_true", help="prompt ids in the truth log")
    ap.add_argument(
        "--plant-cache-hit",
        type=int,
        default=None,
        metavar="N",
        help="the N-th request reports half its prompt as cached (tests the flagging)",
    )
    capacity = ap.add_argument_group("capacity model (module docstring; the sweep scenario's test)")
    capacity.add_argument(
        "--slots", type=int, default=None, help="most requests running at once; others queue"
    )
    capacity.add_argument(
        "--step-ms", type=float, default=None, help="decode step at no load (default: --itl-ms)"
    )
    capacity.add_argument(
        "--step-ms-per-running",
        type=float,
        default=0.0,
        help="what each running request adds to a decode step",
    )
    capacity.add_argument(
        "--kv-cache-tokens",
        type=int,
        default=None,
        help="KV pool size for vllm:kv_cache_usage_perc (default: running / slots)",
    )
    faults = ap.add_argument_group("faults (tests/test_faults.py)")
    faults.add_argument(
        "--fault-status",
        type=int,
        default=None,
        metavar="CODE",
        help="answer every completion request with this HTTP status",
    )
    faults.add_argument(
        "--fault-hang", action="store_true", help="accept completion requests and never answer"
    )
    faults.add_argument(
        "--fault-malformed-sse", action="store_true", help="stream events that are not JSON"
    )
    faults.add_argument(
        "--fault-kill-parent",
        action="store_true",
        help="SIGKILL the parent process at the first completion request",
    )
    faults.add_argument(
        "--fault-port-taken",
        metavar="PIDFILE",
        default=None,
        help="start another server on our port in its own session (its pid to "
        "PIDFILE), then never bind: a foreign server answers in our place",
    )
    faults.add_argument(
        "--fault-exit",
        type=int,
        default=None,
        metavar="CODE",
        help="print an error and exit with CODE before listening",
    )
    a = ap.parse_args(argv)
    if a.fault_exit is not None:
        print(f"RuntimeError: injected start-up failure (exit {a.fault_exit})", flush=True)
        sys.exit(a.fault_exit)
    if a.fault_port_taken:
        _take_port(a.host, a.port, a.fault_port_taken)
        time.sleep(3600)  # a server still loading, whose port someone else answers on
        return
    tok = None
    if a.tokenizer:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(a.tokenizer)
    fd = None
    if a.truth_log:
        fd = os.open(a.truth_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    cfg = Config(
        a.model,
        a.ttft_ms / 1e3,
        a.itl_ms / 1e3,
        a.eos_after,
        fd,
        tok,
        a.uvloop,
        prefix_cache=a.prefix_cache,
        cache_report=a.cache_report,
        log_prompts=a.log_prompts,
        plant_cache_hit=a.plant_cache_hit,
        fault_status=a.fault_status,
        fault_hang=a.fault_hang,
        fault_malformed_sse=a.fault_malformed_sse,
        fault_kill_parent=a.fault_kill_parent,
        slots=a.slots,
        step_s=None if a.step_ms is None else a.step_ms / 1e3,
        step_per_running_s=a.step_ms_per_running / 1e3,
        kv_cache_tokens=a.kv_cache_tokens,
    )
    socks = _listen(a.host, a.port, a.workers)
    port = socks[0].getsockname()[1]
    print(f"READY http://{a.host}:{port} workers={a.workers}", flush=True)
    if a.workers == 1:
        _serve(socks[0], cfg)
        return
    pids = []
    for s in socks:
        pid = os.fork()
        if pid == 0:
            for other in socks:
                if other is not s:
                    other.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                _serve(s, cfg)
            finally:
                os._exit(0)
        pids.append(pid)
    for s in socks:
        s.close()

    def forward(sig, _frame):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in pids:
        os.waitpid(pid, 0)


def _take_port(host: str, port: int, pidfile: str) -> None:
    """Start a plain reference server on `port` outside our session and process group, as a
    server left over from an earlier run would be; wait until it listens."""
    cmd = [sys.executable, "-m", "quantbench.refserver", "--host", host, "--port", str(port)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    with open(pidfile, "w") as f:
        f.write(f"{proc.pid}\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect((host, port))
            return
        time.sleep(0.1)


def vllm_cli(argv: list[str]) -> None:
    """`serve MODEL --host H --port P --served-model-name N [vLLM flags]`, as `vllm serve` takes
    them: the reference server standing in for vLLM in a workflow (tests/test_faults.py). Other
    vLLM flags are ignored. `--faults-from FILE` (JSON: served model name, or "*" for every
    model, -> extra arguments of this server) lets a test break one cell and fix it by editing
    the file, without touching the workflow's config."""
    ap = argparse.ArgumentParser(prog="refserver serve", add_help=False)
    ap.add_argument("model_dir")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", default="8000")
    ap.add_argument("--served-model-name", default="refmodel")
    ap.add_argument("--faults-from", default=None)
    ap.add_argument("--tensor-parallel-size", type=int, default=1)
    known, _ = ap.parse_known_args(argv)
    extra: list[str] = []
    if known.faults_from and os.path.exists(known.faults_from):
        with open(known.faults_from) as f:
            table = json.load(f)
        extra = [*table.get("*", []), *table.get(known.served_model_name, [])]
    args = ["--host", known.host, "--port", known.port, "--model", known.served_model_name]
    # A tensor-parallel server is a process tree (one worker per GPU): forked workers stand in.
    if known.tensor_parallel_size > 1:
        args += ["--workers", str(known.tensor_parallel_size)]
    # vLLM's cache flags, as vLLM reads them: prefix caching on unless switched off.
    if "--no-enable-prefix-caching" not in argv:
        args.append("--prefix-cache")
    if "--enable-prompt-tokens-details" in argv:
        args.append("--cache-report")
    print(f"refserver standing in for `vllm serve {known.model_dir}`: {extra}", flush=True)
    main(args + extra)


