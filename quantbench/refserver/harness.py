"""Running the reference server from a test or a benchmark, and reading its truth log."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def start_refserver(*args: str, ready_timeout: float = 20.0) -> Iterator[str]:
    """Run the server in a subprocess on a free loopback port; yields its base URL."""
    cmd = [sys.executable, "-m", "quantbench.refserver", "--port", "0", *args]
    # the directory holding this quantbench, so the subprocess imports the same copy
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + ready_timeout
        line = proc.stdout.readline()  # the server prints READY once it listens
        if not line.startswith("READY") or time.monotonic() > deadline:
            raise RuntimeError(f"refserver did not start: {line!r}")
        yield line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_truth(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def max_overlap(truth: list[dict]) -> int:
    """Most requests in flight at once across all workers (receive -> last write)."""
    events = sorted([(t["recv_time"], 1) for t in truth] + [(t["end_time"], -1) for t in truth])
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best

