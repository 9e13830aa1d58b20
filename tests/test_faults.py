"""The fault matrix (issue 19): the real workflow on the tiny model, with the reference server
standing in for vLLM (`python -m quantbench.refserver serve ...`, faults chosen per cell from
faults.json, so a fix is an edit of that file and not of the config Snakemake tracks).

For each fault: the sweep goes on, the report exists and shows the cell's status and reason, no
process of the run survives, no half-written file is read as a result, and a rerun after the fix
measures only what failed. Disk full is a tiny full tmpfs where this machine can mount one
(root), else the ENOSPC hook in quantbench.io (QUANTBENCH_FAULT_ENOSPC) stands in for it; the
read-only results directory is a read-only bind mount, else chmod (non-root). About 6 minutes on
2 cores.
"""

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_e2e import copy_workflow

from quantbench.report import build_report
from quantbench.status import Status

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process checks read /proc")

FAULTS = {
    "q-500": ["--fault-status", "500"],
    "q-hang": ["--fault-hang"],
    "q-sse": ["--fault-malformed-sse"],
    "q-port": ["--fault-port-taken", "foreign.pid"],
    "q-kill": ["--fault-kill-parent"],
}
QUANTS = ["q-ok", *FAULTS, "q-full"]
FAST = {"*": ["--ttft-ms", "5", "--itl-ms", "1"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(
    work: Path, cells: list[tuple[str, str]], openai_port: int, timeout_s: float = 4
) -> None:
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg.pop("sweep", None)
    cfg["models"] = {"tiny": {"source": "tiny", "seed": 0}}
    cfg["quantizations"] = {q: {"method": "bf16"} for q in QUANTS}
    cfg["engines"] = {
        # relative paths: the job (and the server it starts) run in the working directory
        "vllm": {
            "executable": "./fake-vllm",
            "device": "cpu",
            "request_timeout_s": timeout_s,
            "ready_timeout_s": 30,
            "extra_args": ["--faults-from", "faults.json"],
        },
        "openai": {
            "base_url": f"http://127.0.0.1:{openai_port}/v1",
            "model": "ext",
            "request_timeout_s": 4,
        },
    }
    cfg["cells"] = [{"model": "tiny", "quantization": q, "engine": e} for q, e in cells]
    cfg["benchmark"] = {
        "scenarios": ["single"],
        "single": {"input_lengths": [8], "output_len": 4, "repeats": 1, "warmup": 0, "seed": 0},
    }
    cfg["evaluation"]["enabled"] = False
    (work / "faults.yaml").write_text(yaml.safe_dump(cfg))


def set_faults(work: Path, faults: dict) -> None:
    table = {**FAST, **{f"tiny-{q}": args for q, args in faults.items()}}
    (work / "faults.json").write_text(json.dumps(table))


class Run:
    """One working directory; every process it starts carries QB_RUN=<marker> in its
    environment, so the test can list what survives."""

    def __init__(self, work: Path):
        self.work = work
        self.marker = uuid.uuid4().hex
        self.env = {
            **os.environ,
            "QB_RUN": self.marker,
            "QUANTBENCH_LOCK_DIR": str(work / "locks"),
        }

    def cmd(self, *args: str, cores: bool = True) -> list[str]:
        return [
            sys.executable,
            "-m",
            "snakemake",
            *(["-c2"] if cores else []),
            *args,
            "--configfile",
            "faults.yaml",
        ]

    def snakemake(self, *args: str, cores: bool = True, timeout: int = 600):
        return subprocess.run(
            self.cmd(*args, cores=cores),
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.cmd(*args),
            cwd=self.work,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def processes(self) -> dict[int, str]:
        """Live processes of this run (zombies excluded)."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
                stat = (entry / "stat").read_text()
                if f"QB_RUN={self.marker}".encode() not in env:
                    continue
                if stat[stat.rindex(")") + 2] in "ZX":
                    continue
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
        return {pid: cmd.decode(errors="replace") for pid, cmd in found.items()}

    def assert_no_survivors(self, timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.processes() == {}

    def speed(self) -> dict[str, str]:
        table = pd.read_csv(self.work / "results/report/speed.csv", dtype=str).fillna("")
        return {f"{r.quantization}/{r.engine}": r.speed_tok_s for r in table.itertuples()}


def assert_results_whole(work: Path) -> None:
    """No temporary file left behind, every result file parses, and is readable by others."""
    results = work / "results"
    leftovers = [p for p in results.rglob("*.tmp") if "weights" not in p.parts]
    assert leftovers == []
    for path in list(results.glob("bench/**/*.json")) + list(results.glob("serve/**/*.json")):
        json.loads(path.read_text())
        assert path.stat().st_mode & 0o044 == 0o044, path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The tiny model and its (in-place) BF16 quantizations, built once; each test clones it,
    Snakemake's metadata included, so no clone builds them again."""
    work = copy_workflow(tmp_path_factory.mktemp("faults-base"))
    shim = work / "fake-vllm"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m quantbench.refserver "$@"\n')
    shim.chmod(0o755)
    write_config(work, [(q, "vllm") for q in QUANTS], _free_port())
    set_faults(work, {})
    targets = [f"results/quantized/tiny/{q}/quant.json" for q in QUANTS]
    proc = Run(work).snakemake(*targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def clone(prepared: Path, dest: Path) -> Path:
    shutil.copytree(prepared, dest, symlinks=True)
    return dest


def _mount_full_tmpfs(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)])
    if ok.returncode != 0:
        return False
    try:  # fill it: the next write gets ENOSPC
        with open(path / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    return True


def test_fault_matrix_in_one_sweep(prepared, tmp_path):
    work = clone(prepared, tmp_path / "wf")
    openai_port = _free_port()
    cells = [(q, "vllm") for q in QUANTS] + [("q-ok", "openai")]
    write_config(work, cells, openai_port)  # the openai endpoint: nothing listens there
    set_faults(work, FAULTS)
    run = Run(work)
    full_dir = work / "results/bench/tiny/q-full/vllm"
    mounted = _mount_full_tmpfs(full_dir)
    if not mounted:  # stand-in: writes under this cell's directory fail with ENOSPC
        run.env["QUANTBENCH_FAULT_ENOSPC"] = "bench/tiny/q-full/"
    try:
        proc = run.snakemake("-k")
    finally:
        if mounted:
            subprocess.run(["umount", str(full_dir)], check=True)
        run.env.pop("QUANTBENCH_FAULT_ENOSPC", None)
    # Two jobs died (SIGKILL, disk full): Snakemake says so, and the report still came out.
    assert proc.returncode != 0
    assert "reports every planned cell" in proc.stderr
    foreign = int((work / "foreign.pid").read_text())
    os.kill(foreign, signal.SIGTERM)  # the server that took the port is not the run's to stop
    run.assert_no_survivors()
    assert_results_whole(work)

    speed = run.speed()
    assert float(speed["q-ok/vllm"]) > 0
    assert speed["q-500/vllm"].startswith(Status.FAILED) and "500" in speed["q-500/vllm"]
    assert speed["q-hang/vllm"].startswith(Status.FAILED) and "timeout" in speed["q-hang/vllm"]
    assert speed["q-sse/vllm"].startswith(Status.FAILED)
    assert "not from the server we started" in speed["q-port/vllm"]
    assert speed["q-kill/vllm"].startswith("not run: the benchmark job died")
    assert "log: results/logs/benchmark/tiny/q-kill/vllm.log" in speed["q-kill/vllm"]
    full = speed["q-full/vllm"]
    assert full.startswith(Status.NOT_RUN) and "No space left" in full
    assert "does not answer" in speed["q-ok/openai"]
    log = (work / "results/logs/benchmark/tiny/q-full/vllm.log").read_text()
    assert "Traceback" in log and "No space left on device" in log  # the job's own traceback

    # The fix: healthy servers, space on disk, the endpoint up. Only what failed runs again.
    kept = work / "results/bench/tiny/q-ok/vllm/single.json"
    before = kept.read_bytes()
    set_faults(work, {})
    dry = run.snakemake("-n")
    assert dry.returncode == 0 and "Forced execution" in dry.stdout
    endpoint = subprocess.Popen(
        [sys.executable, "-m", "quantbench.refserver", "--port", str(openai_port)]
        + ["--model", "ext", "--ttft-ms", "5", "--itl-ms", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert endpoint.stdout.readline().startswith("READY")
        proc = run.snakemake("-k")
    finally:
        endpoint.terminate()
        endpoint.wait(10)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert kept.read_bytes() == before  # measured once, kept
    ran = proc.stderr.count("localrule benchmark:") + proc.stdout.count("localrule benchmark:")
    assert ran == len(cells) - 1
    speed = run.speed()
    assert all(float(v) > 0 for v in speed.values()), speed
    run.assert_no_survivors()

    # A corrupt result: named by the report's reader, measured again by the next run (alone).
    kept.write_text(before.decode()[: len(before) // 2])
    dry = run.snakemake("-n")
    assert "Forced execution" in dry.stdout and str(kept.relative_to(work)) in dry.stderr
    assert kept.read_bytes() == before[: len(before) // 2]  # a dry run changes nothing
    proc = run.snakemake()
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr + proc.stdout
    assert log.count("localrule benchmark:") == 1 and "quant=q-ok, engine=vllm" in log
    assert float(run.speed()["q-ok/vllm"]) > 0
    assert_results_whole(work)


def _wait_for_server(run: Run, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any("quantbench.refserver serve" in c for c in run.processes().values()):
            time.sleep(1.0)  # into the first request
            return
        time.sleep(0.2)
    pytest.fail(f"no server came up: {run.processes()}")


def test_interrupts_stop_everything_and_the_rerun_measures_the_cell(prepared, tmp_path):
    work = clone(prepared, tmp_path / "wf")
    write_config(work, [("q-ok", "vllm")], _free_port(), timeout_s=60)
    set_faults(work, {"q-ok": ["--ttft-ms", "60000"]})  # a request outlasts the interrupt
    run = Run(work)
    for how in ("SIGINT to the process group", "SIGINT to the PID", "SIGKILL to snakemake"):
        sm = run.start()
        _wait_for_server(run)
        t = time.monotonic()
        if how.endswith("group"):
            os.killpg(sm.pid, signal.SIGINT)
        elif how.endswith("PID"):
            os.kill(sm.pid, signal.SIGINT)
        else:
            os.kill(sm.pid, signal.SIGKILL)
        sm.wait(30)
        run.assert_no_survivors(timeout_s=15)
        # stopped, not finished: the request alone would take a minute
        assert time.monotonic() - t < 20, how
        if how.startswith("SIGINT"):
            assert run.speed()["q-ok/vllm"].startswith(Status.NOT_RUN), how
    # The documented recovery after a killed Snakemake; the bookkeeping commands need no -c.
    for args in (["--unlock"], ["--summary"], ["--list-changes", "params"]):
        proc = run.snakemake(*args, cores=False, timeout=120)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
    set_faults(work, {})
    proc = run.snakemake()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(run.speed()["q-ok/vllm"]) > 0
    run.assert_no_survivors()

    # A read-only results directory is refused before any job runs, with what to do.
    results = work / "results"
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "--bind", str(results), str(results)]).returncode == 0
        if not mounted:
            pytest.skip("root without mount: no way to make results/ read-only here")
        subprocess.run(["mount", "-o", "remount,bind,ro", str(results)], check=True)
    else:
        mounted = False
        results.chmod(0o555)
    try:
        for args in (["-n"], []):
            proc = run.snakemake(*args)
            assert proc.returncode != 0
            said = proc.stdout + proc.stderr
            assert "results/ is not writable (read-only file system)" in said or (
                "results/ is not writable (permission denied)" in said
            )
            assert "snakemake -d DIR" in said
    finally:
        if mounted:
            subprocess.run(["umount", str(results)], check=True)
        else:
            results.chmod(0o755)
    run.assert_no_survivors()


def test_report_names_an_unreadable_file_and_keeps_the_old_report(tmp_path):
    os.chdir(tmp_path)
    bench = Path("results/bench/m/q/vllm")
    bench.mkdir(parents=True)
    (bench / "single.json").write_text('{"scenario": "sing')
    out = Path("results/report")
    out.mkdir()
    (out / "published.md").write_text("kept")
    cfg = {"benchmark": {"single": {"input_lengths": [8], "output_len": 4}}}
    paths = [str(bench / "single.json")], [str(bench / "engine.json")]
    build_report(*paths, [], [], out, config=cfg)
    speed = pd.read_csv(out / "speed.csv", dtype=str)
    text = speed.loc[0, "speed_tok_s"]
    assert text.startswith("failed: results/bench/m/q/vllm/single.json is not valid JSON")
    assert "rerun to measure it again, or delete it" in text
    engine = pd.read_csv(out / "engine.csv", dtype=str)
    assert engine.loc[0, "status"] == Status.NOT_RUN
    assert (out / "published.md").read_text() == "kept"  # other rules' files stay
    assert not list(Path("results").glob(".report.*"))  # the staging directory is gone


def test_report_command_merges_its_config_files_as_the_run_did(tmp_path):
    """`quantbench report --config A --config B` merges nested keys like Snakemake does: B's
    `benchmark:` adds to A's instead of replacing it, so the failed cell's rows keep A's
    lengths. A broken file is one line naming it, before any report is written."""
    os.chdir(tmp_path)
    bench = Path("results/bench/m/q/vllm")
    bench.mkdir(parents=True)
    (bench / "single.json").write_text('{"scenario": "sing')
    Path("a.yaml").write_text("benchmark:\n  single: {input_lengths: [8, 16], output_len: 4}\n")
    Path("b.yaml").write_text("benchmark:\n  scenarios: [single]\n")
    command = [sys.executable, "-m", "quantbench.cli", "report", "results"]
    proc = subprocess.run(
        [*command, "--config", "a.yaml", "--config", "b.yaml"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    speed = pd.read_csv("results/report/speed.csv")
    assert sorted(speed["input_len"]) == [8, 16]
    assert speed["speed_tok_s"].str.startswith("failed: ").all()

    Path("c.yaml").write_text("benchmark: {}\nbenchmark: {}\n")
    proc = subprocess.run([*command, "--config", "c.yaml"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "c.yaml" in proc.stderr and "duplicate key 'benchmark'" in proc.stderr


def test_a_benchmark_job_cut_mid_row_keeps_the_requests_it_logged(tmp_path, monkeypatch):
    """A job stopped before writing single.json (a time limit, scancel, a machine taken back)
    logged each request it finished: the report reads those back, marks the cell `partial` and
    shows the repeats it did not reach as such; a line cut mid-row is not read."""
    from quantbench.results import read_result
    from quantbench.scenarios.single import _log_row

    os.chdir(tmp_path)
    for upstream in ("models/m/model.json", "quantized/m/q/quant.json", "serve/m/q/e/launch.json"):
        Path("results", upstream).parent.mkdir(parents=True, exist_ok=True)
        Path("results", upstream).write_text('{"status": "ok"}')
    log = Path("results/logs/benchmark/m/q/e.log")
    log.parent.mkdir(parents=True)
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", terminal)
    with log.open("w") as f, contextlib.redirect_stderr(f):  # as jobs.logged does
        f.write("single:   0%|          | 0/4 [00:00<?, ?req/s]\r")  # a bar in the log too
        for input_len, repeat, speed in ((8, 0, 10.0), (8, 1, 12.0), (16, 0, 20.0)):
            row = {"scenario": "single", "input_len": input_len, "output_len": 4,
                   "repeat": repeat, "batch_size": 1, "status": "ok", "speed_tok_s": speed,
                   "decode_speed_tok_s": speed / 2, "peak_mem_mb": 100.0,
                   "cached_tokens": 0}  # fmt: skip
            _log_row(row)
        f.write('single {"scenario": "single", "input_len": 16, "repeat": 1, "sta')  # cut here
    assert terminal.getvalue().count('single {"scenario": "single"') == 3  # shown there too
    cfg = {"benchmark": {"single": {"input_lengths": [8, 16, 32], "output_len": 4, "repeats": 2}}}
    bench = "results/bench/m/q/e/single.json"
    doc = read_result(bench, cfg)
    assert doc["status"] == Status.PARTIAL
    assert "the 3 requests it finished are read from its log" in doc["reason"]
    stopped = [(r["input_len"], r["repeat"]) for r in doc["rows"] if r["status"] == Status.NOT_RUN]
    assert stopped == [(16, 1), (32, 0), (32, 1)]

    out = Path("results/report")
    build_report([bench], ["results/bench/m/q/e/engine.json"], [], [], out, config=cfg)
    speed = pd.read_csv(out / "speed.csv", dtype=str).set_index("input_len")
    assert speed.loc["8", "speed_tok_s"] == "11.00 ± 1.41 (job stopped: 2 of 2, read from its log)"
    assert speed.loc["16", "speed_tok_s"].endswith("(job stopped: 1 of 2, read from its log)")
    assert speed.loc["32", "speed_tok_s"].startswith(Status.NOT_RUN)
    requests = pd.read_csv(out / "requests.csv")
    assert set(requests["file_status"]) == {Status.PARTIAL}

    # A job that failed on its own (here: its disk full) is not read back: its `not run` stays.
    with log.open("a") as f:
        f.write("\nOSError: [Errno 28] No space left on device\n")
    doc = read_result(bench, cfg)
    assert doc["status"] == Status.NOT_RUN and "No space left" in doc["reason"]
    with log.open("a") as f:  # a SIGTERM (time limit, scancel) is a stop, not a failure
        f.write("quantbench.guard.JobTerminated: 143\n")
    assert read_result(bench, cfg)["status"] == Status.PARTIAL
