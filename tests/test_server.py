"""ManagedServer against a tiny http.server that forks a `sleep 300` child, so every test can
prove the whole process group is gone afterwards. All waits are bounded."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from quantbench.engines.server import ManagedServer, ServerStartError, Terminated

REPO = Path(__file__).resolve().parents[1]

SERVER = textwrap.dedent("""
    import http.server, signal, subprocess, sys, time
    port, mode = int(sys.argv[1]), sys.argv[2]
    t0 = time.monotonic()
    child = subprocess.Popen(["sleep", "300"])
    print(f"server up, child {child.pid}, mode {mode}", flush=True)
    if mode == "crash":
        print("RuntimeError: CUDA out of memory (pretend)", flush=True)
        sys.exit(3)
    if mode == "hang":
        time.sleep(300)
    if mode == "stubborn":  # ignores SIGTERM, as a wedged worker would
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "polite":  # stops its own child on SIGTERM, as vLLM/SGLang do
        def bye(*_):
            child.terminate()
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            loading = mode == "slow" and time.monotonic() - t0 < 1.0
            self.send_response(503 if loading or self.path != "/health" else 200)
            self.end_headers()

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
""")


@pytest.fixture()
def server_py(tmp_path):
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return path


def assert_group_gone(pgid: int) -> None:
    # Checked at once, not polled: stop() must have killed and reaped every member, including
    # the `sleep` grandchild (a zombie would still answer killpg(pgid, 0)).
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def make(server_py, tmp_path, mode="ok", **kw):
    kw.setdefault("ready_timeout_s", 20)
    kw.setdefault("poll_interval_s", 0.05)
    kw.setdefault("grace_s", 3)
    return ManagedServer(
        [sys.executable, str(server_py), "{port}", mode],
        log_path=tmp_path / "logs" / "server.log",
        **kw,
    )


def test_ready_then_whole_group_stopped(server_py, tmp_path):
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with make(server_py, tmp_path, env={"QB_MARK": "1"}) as srv:
        assert srv.port and srv.base_url == f"http://127.0.0.1:{srv.port}"
        assert srv.cmd[2] == str(srv.port)  # {port} substituted
        with urllib.request.urlopen(srv.base_url + "/health", timeout=5) as resp:
            assert resp.status == 200
        assert os.getpgid(srv.pid) == srv.pid  # own session and process group
        assert signal.getsignal(signal.SIGTERM) == srv._on_signal
        pgid = srv.pgid
        assert 0 < srv.startup_s < 20
    assert_group_gone(pgid)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers
    assert srv.stop_s < 5 and srv.stopped_at >= srv.ready_at >= srv.spawned_at
    assert "server up, child" in srv.log_text()


def test_health_polling_waits_through_503(server_py, tmp_path):
    with make(server_py, tmp_path, mode="slow") as srv:
        assert srv.startup_s >= 1.0
    assert_group_gone(srv.pgid)


def test_exception_in_body_stops_group(server_py, tmp_path):
    with pytest.raises(ZeroDivisionError), make(server_py, tmp_path) as srv:
        pgid = srv.pgid
        1 / 0  # noqa: B018
    assert_group_gone(pgid)


def test_crash_before_ready_reports_log_tail(server_py, tmp_path):
    srv = make(server_py, tmp_path, mode="crash")
    t = time.monotonic()
    with pytest.raises(ServerStartError) as err:
        srv.start()
    assert time.monotonic() - t < 10  # fails fast, not at the timeout
    msg = str(err.value)
    assert "exited with code 3" in msg
    assert "CUDA out of memory (pretend)" in msg
    assert str(srv.log_path) in msg
    assert_group_gone(srv.pgid)  # the leader exited but its sleep child was still in the group


def test_timeout_stops_group(server_py, tmp_path):
    srv = make(server_py, tmp_path, mode="hang", ready_timeout_s=1.5)
    with pytest.raises(ServerStartError, match=r"no 200 within 1.5 s") as err:
        srv.start()
    assert "mode hang" in str(err.value)
    assert_group_gone(srv.pgid)


def test_sigterm_ignored_escalates_to_sigkill(server_py, tmp_path):
    with make(server_py, tmp_path, mode="stubborn", grace_s=1.0) as srv:
        pass
    assert 1.0 <= srv.stop_s < 6
    assert srv.returncode == -signal.SIGKILL
    assert_group_gone(srv.pgid)


def test_log_text_is_this_run_only_and_missing_binary(server_py, tmp_path):
    with make(server_py, tmp_path):
        pass
    with make(server_py, tmp_path, mode="slow") as srv:
        pass
    assert srv.log_text().count("server up") == 1
    assert (tmp_path / "logs" / "server.log").read_text().count("server up") == 2
    with pytest.raises(ServerStartError, match="cannot start"):
        ManagedServer(["/nonexistent/vllm", "{port}"], log_path=tmp_path / "x.log").start()


PARENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from quantbench.engines.server import ManagedServer
    server_py, log, pgid_file, mode = sys.argv[1:5]
    srv = ManagedServer([sys.executable, server_py, "{port}", "polite"], log_path=log,
                        ready_timeout_s=20, poll_interval_s=0.05, grace_s=5)
    if mode == "atexit":  # never stopped explicitly: the atexit fallback must do it
        srv.start()
        Path(pgid_file).write_text(str(srv.pgid))
        sys.exit(0)
    try:
        with srv:
            Path(pgid_file).write_text(str(srv.pgid))
            time.sleep(60)
    finally:
        print("cleanup ran", flush=True)
""")


def run_parent(tmp_path, server_py, mode):
    parent_py = tmp_path / "parent.py"
    parent_py.write_text(PARENT)
    pgid_file = tmp_path / "pgid"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen(
        [
            sys.executable,
            str(parent_py),
            str(server_py),
            str(tmp_path / "p.log"),
            str(pgid_file),
            mode,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not pgid_file.exists() or not pgid_file.read_text():
        if time.monotonic() > deadline or parent.poll() is not None:
            parent.kill()
            pytest.fail(f"parent never became ready: {parent.communicate()[0]}")
        time.sleep(0.05)
    return parent, int(pgid_file.read_text())


@pytest.mark.parametrize(
    "sig, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, None)]
)
def test_signal_to_parent_stops_server_group(tmp_path, server_py, sig, code):
    parent, pgid = run_parent(tmp_path, server_py, "with")
    parent.send_signal(sig)
    out, _ = parent.communicate(timeout=20)
    assert "cleanup ran" in out
    if code is not None:
        assert parent.returncode == code  # Terminated is a SystemExit(128 + signum)
    else:
        assert parent.returncode != 0 and "KeyboardInterrupt" in out
    assert_group_gone(pgid)


def test_atexit_fallback(tmp_path, server_py):
    parent, pgid = run_parent(tmp_path, server_py, "atexit")
    parent.communicate(timeout=20)
    assert parent.returncode == 0
    assert_group_gone(pgid)


def test_sigkilled_parent_leader_gets_sigterm(tmp_path, server_py):
    # Nothing in the parent can run; PR_SET_PDEATHSIG makes the kernel SIGTERM the leader,
    # which (like vLLM / SGLang) stops its own child.
    parent, pgid = run_parent(tmp_path, server_py, "with")
    parent.kill()
    parent.communicate(timeout=10)
    # The orphans' zombies may sit under a non-reaping init, so ask for live processes only.
    from quantbench.engines.procgroup import reap_and_list_alive

    deadline = time.monotonic() + 10
    while reap_and_list_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reap_and_list_alive(pgid) == []


def test_terminated_is_a_systemexit():
    t = Terminated(signal.SIGTERM)
    assert isinstance(t, SystemExit) and t.code == 143 and t.signum == signal.SIGTERM


def test_a_foreign_server_on_our_port_is_refused(tmp_path, server_py):
    # Another server (one left running by an earlier run, say) answers /health on the port our
    # server should bind, while ours is still loading: its answer must not count as ours.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    other = subprocess.Popen([sys.executable, str(server_py), str(port), "ok"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        srv = ManagedServer(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            port=port,
            log_path=tmp_path / "ours.log",
            ready_timeout_s=20,
            poll_interval_s=0.05,
        )
        with pytest.raises(ServerStartError, match="not from the server we started"):
            srv.start()
        assert_group_gone(srv.pgid)
        assert other.poll() is None  # not ours to stop
    finally:
        other.kill()
        other.wait()
