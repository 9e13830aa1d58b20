"""The sweep on a real Slurm through profiles/slurm: the single-node cluster of .ci/slurm/start.sh
(CI starts it before the tests). Without a running cluster the test is skipped."""

import re
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from quantbench.status import Status
from tests.test_e2e import ROOT, copy_workflow

PROFILE = ROOT / "profiles" / "slurm"
SLURM_RULES = {"model", "quantize_bf16", "quantize_llmcompressor", "serve", "benchmark", "evaluate"}
GPU_RULES = {"quantize_llmcompressor", "serve", "benchmark", "evaluate"}
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: .*/rule_(\w+)/")


def _cluster() -> dict | None:
    """The node's CPUs and memory (MB) when a Slurm cluster answers, else None."""
    if not shutil.which("sinfo"):
        return None
    try:  # without a controller, sinfo retries for a while before it gives up
        proc = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%c %m %T"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return None
    states = [line.split() for line in proc.stdout.splitlines()]
    ready = [s for s in states if s[2] in ("idle", "mixed")]
    if proc.returncode or not ready:
        return None
    return {"cpus": int(ready[0][0]), "mem_mb": int(ready[0][1])}


CLUSTER = _cluster()
pytestmark = pytest.mark.skipif(
    CLUSTER is None, reason="no Slurm cluster answers `sinfo`: start one with .ci/slurm/start.sh"
)


def _ci_overrides(cpus: int, mem_mb: int) -> list[str]:
    """The profile's resources, with CPUs and memory cut to the CI node (2 cores, 24 GiB): those
    are the only site-specific values changed; partitions, GPUs and the rest stay as they are."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    cap = {"mem_mb": mem_mb // 4, "cpus_per_task": cpus}

    def fit(resources: dict) -> list[str]:
        return [f"{k}={min(v, cap[k]) if k in cap else v}" for k, v in resources.items()]

    per_rule = [
        f"{rule}:{item}"
        for rule, resources in profile["set-resources"].items()
        for item in fit(resources)
    ]
    return [
        f"--cores={cpus}",
        "--default-resources",
        *fit(profile["default-resources"]),
        "--set-resources",
        *per_rule,
        # Short jobs: poll often instead of the plugin's 40 s (and NFS-free: no latency wait).
        "--slurm-init-seconds-before-status-checks=5",
        "--latency-wait=5",
    ]


def _squeue(*job_ids: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING", "-o", "%i", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return out.split()


def _job_state(job_id: str) -> str:
    """The job's state as the controller keeps it after the end (MinJobAge)."""
    show = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=False
    ).stdout
    return re.search(r"JobState=(\w+)", show).group(1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("slurm"))
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg["quantizations"] = {
        q: cfg["quantizations"][q] for q in ("bf16", "fp8-dynamic", "w4a16-gptq")
    }
    # GPTQ needs more calibration text than the corpus holds: this cell fails inside its Slurm
    # job, is recorded as failed, and the rest of the sweep completes.
    cfg["calibration"].update(num_samples=4000, seq_len=2048)
    cfg["benchmark"]["single"].update(input_lengths=[1, 32], output_len=8, repeats=1)
    cfg["evaluation"]["limit"] = 2
    (work / "test.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(PROFILE), "--configfile"]
    cmd += ["test.yaml", *_ci_overrides(**CLUSTER)]
    # One Snakemake per working directory (a second one's log clean-up deletes the first's).
    proc = subprocess.Popen(
        cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = proc.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # Snakemake scancels its jobs on SIGINT
        out, _ = proc.communicate(timeout=120)
        pytest.fail("snakemake on Slurm timed out:\n" + out[-6000:])
    assert proc.returncode == 0, out[-6000:]
    return work, dict(SUBMITTED.findall(out)), out


def test_report_from_slurm_jobs(run):
    work, _, _ = run
    speed = pd.read_csv(work / "results/report/speed.csv")
    assert set(speed["quantization"]) == {"bf16", "fp8-dynamic", "w4a16-gptq"}
    assert set(speed["input_len"]) == {1, 32}
    failed = speed["speed_tok_s"].astype(str).str.startswith(Status.FAILED)
    assert (failed == (speed["quantization"] == "w4a16-gptq")).all()
    quality = pd.read_csv(work / "results/report/quality.csv")
    good = quality[quality["quantization"] != "w4a16-gptq"]
    assert (good["status"] == Status.OK).all() and (good["n"] == 2).all()
    assert (quality[quality["quantization"] == "w4a16-gptq"]["status"] == Status.FAILED).all()


def test_every_job_ran_in_slurm_with_its_resources(run):
    work, jobs, out = run
    assert set(jobs.values()) >= SLURM_RULES, out[-3000:]
    # One Slurm job per (model, quantization, engine) measurement.
    assert sorted(r for r in jobs.values() if r == "benchmark") == ["benchmark"] * 3
    for rule in SLURM_RULES:
        assert list((work / ".snakemake/slurm_logs" / f"rule_{rule}").rglob("*.log")), rule
    for job_id, rule in jobs.items():
        show = subprocess.run(
            ["scontrol", "show", "job", "-d", job_id], capture_output=True, text=True, check=True
        ).stdout
        assert "JobState=COMPLETED" in show, show
        gpu = rule in GPU_RULES
        assert f"Partition={'gpu' if gpu else 'cpu'}" in show, show
        assert ("gres:gpu:1" in show) == gpu, show


def test_no_jobs_left_in_the_queue(run):
    _, jobs, _ = run
    assert _squeue(*jobs) == []


def test_a_cancelled_run_leaves_no_job_and_no_half_written_result(tmp_path):
    work = copy_workflow(tmp_path)
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg["quantizations"] = {"bf16": cfg["quantizations"]["bf16"]}
    # Minutes of work (20 requests x 2048 tokens at ~280 tok/s), so the job cannot end on its
    # own before Snakemake cancels it.
    cfg["benchmark"]["single"].update(input_lengths=[1, 1024], output_len=2048, repeats=10)
    cfg["evaluation"]["enabled"] = False
    (work / "test.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(PROFILE), "--configfile"]
    cmd += ["test.yaml", *_ci_overrides(**CLUSTER)]
    # A shell that starts a command in the background (`make test &`, nohup) hands it SIGINT
    # ignored, and Python then installs no Ctrl-C handler: give Snakemake a terminal's default.
    proc = subprocess.Popen(
        cmd,
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    for line in proc.stdout:  # wait until the measurement itself is in Slurm's hands
        lines.append(line)
        if "rule_benchmark" in line and "submitted" in line:
            break
    else:
        pytest.fail("no benchmark job was submitted:\n" + "".join(lines[-60:]))
    (bench_job,) = [job for job, rule in SUBMITTED.findall(lines[-1]) if rule == "benchmark"]
    deadline = time.monotonic() + 120  # ... and running there, mid-measurement
    while _job_state(bench_job) != "RUNNING" and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(5)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: Snakemake scancels what it submitted
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("Snakemake did not stop on Ctrl-C:\n" + "".join(lines[-40:]))
    jobs = dict(SUBMITTED.findall("".join(lines) + out))
    # scancel signals the job; it stays COMPLETING until its processes exit (KillWait, 30 s).
    deadline = time.monotonic() + 120
    while _squeue(*jobs) and time.monotonic() < deadline:
        time.sleep(2)
    assert _squeue(*jobs) == []
    assert _job_state(bench_job) == "CANCELLED"  # cancelled, not left to run to its end
    bench = work / "results/bench/tiny-qwen3/bf16/transformers/single.json"
    assert not bench.exists()  # the cancelled measurement left nothing that looks finished


def test_a_tensor_parallel_cell_gets_its_gpus_and_leaves_no_worker(tmp_path):
    """A TP-2 cell through profiles/slurm: its benchmark job asks Slurm for the cell's two GPUs
    (the cluster has four fake ones), the server runs as a process tree of one worker per GPU
    (the reference server standing in for `vllm serve --tensor-parallel-size 2`: forked workers
    on one port), and no process of it survives the job."""
    work = copy_workflow(tmp_path)
    shim = work / "fake-vllm"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m quantbench.refserver "$@"\n')
    shim.chmod(0o755)
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg.pop("sweep", None)
    cfg["models"] = {"tiny": {"source": "tiny", "seed": 0}}
    cfg["quantizations"] = {"bf16": {"method": "bf16"}}
    cfg["engines"] = {
        "vllm": {"executable": "./fake-vllm", "device": "cpu", "tensor_parallel_size": 2}
    }
    cfg["cells"] = [{"model": "tiny", "quantization": "bf16", "engine": "vllm"}]
    cfg["benchmark"] = {
        "scenarios": ["single"],
        "single": {"input_lengths": [8], "output_len": 4, "repeats": 1},
    }
    cfg["evaluation"] = {"enabled": False}
    (work / "tp.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(PROFILE), "--configfile"]
    cmd += ["tp.yaml", *_ci_overrides(**CLUSTER)]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=540)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    jobs = dict(SUBMITTED.findall(out))
    (bench_job,) = [j for j, rule in jobs.items() if rule == "benchmark"]
    show = subprocess.run(
        ["scontrol", "show", "job", "-d", bench_job], capture_output=True, text=True, check=True
    ).stdout
    assert "gres:gpu:2" in show and "JobState=COMPLETED" in show, show
    launch = (work / "results/serve/tiny/bf16/vllm/launch.json").read_text()
    assert '"--tensor-parallel-size",\n    "2"' in launch
    assert "workers=2" in (work / "results/logs/server/tiny/bf16/vllm.log").read_text()
    speed = pd.read_csv(work / "results/report/speed.csv")
    assert speed["speed_tok_s"].astype(str).str.match(r"^\d").all(), speed
    requests = pd.read_csv(work / "results/report/requests.csv")  # the published tables' key
    assert set(requests["tensor_parallel_size"]) == {2}, requests
    left = subprocess.run(["pgrep", "-f", f"refserver serve {work}"], capture_output=True)
    assert left.stdout == b"", left.stdout
