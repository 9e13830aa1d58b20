"""How accurately do load clients measure? Run them against the reference server of known timing.

For each client and concurrency, compares the client's TTFT (mean), TPOT (mean) and ITL p99 with
the server's truth log (truth TTFT = request received -> first content chunk written, etc.,
on the same CLOCK_MONOTONIC), and reports output tokens/s and the client's CPU use.

    python benchmarks/client_accuracy.py --quick
    python benchmarks/client_accuracy.py --clients ours,vllm --peer-venv /opt/peers
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Runnable as a plain script from anywhere: the repo root onto the path, for us and subprocesses.
ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))

from quantbench.client.stream import load_records  # noqa: E402
from quantbench.metrics import RequestRecord, compute_metrics  # noqa: E402
from quantbench.refserver import read_truth, start_refserver  # noqa: E402

MODEL = "refmodel"


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


def child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_ours(url: str, c: int, n: int, a, work: Path) -> tuple[dict, list[dict]]:
    prefix = f"ours-c{c}"
    raw, summ = work / f"{prefix}.raw.jsonl", work / f"{prefix}.summary.json"
    cmd = [
        sys.executable,
        "-m",
        "quantbench.client",
        "--base-url",
        url,
        "--model",
        MODEL,
        "--num-prompts",
        str(n),
        "--input-len",
        str(a.input_len),
        "--output-len",
        str(a.output_len),
        "--concurrency",
        str(c),
        "--warmup",
        str(min(c, 4)),
        "--id-prefix",
        prefix,
        "--seed",
        str(a.seed),
        "--raw-out",
        str(raw),
        "--summary-out",
        str(summ),
        "--timeout-s",
        "300",
    ]
    cpu0 = child_cpu()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    proc_cpu = child_cpu() - cpu0
    s = json.loads(summ.read_text())
    recs = load_records(str(raw))
    truth = [
        t
        for t in read_truth(a.truth_path)
        if t["id"].startswith(prefix + "-") and "-warmup-" not in t["id"]
    ]
    by_id = {t["id"]: t for t in truth}
    pairs = [(r, by_id[r.request_id]) for r in recs if r.ok and r.request_id in by_id]
    # Paired per-request TTFT error: the sharpest test, free of sampling differences. It splits
    # into pickup (client send -> server read it; kernel queueing + server scheduling) and
    # delivery (server write -> client stamp; the client's own lag shows up here).
    paired = [(r.ttft - (t["chunk_times"][0] - t["recv_time"])) * 1e3 for r, t in pairs]
    pickup = [(t["recv_time"] - r.send_time) * 1e3 for r, t in pairs]
    deliv = np.concatenate(
        [
            np.subtract(r.token_times, t["chunk_times"]) * 1e3
            for r, t in pairs
            if len(r.token_times) == len(t["chunk_times"])
        ]
        or [[np.nan]]
    )
    out = {
        "client_metrics": compute_metrics(recs).as_dict(),
        "client_cpu_s": s["client_cpu_s"],
        "client_wall_s": s["client_wall_s"],
        "process_cpu_s": proc_cpu,
        "ttft_paired_err_mean_ms": float(np.mean(paired)) if paired else float("nan"),
        "ttft_paired_err_absmax_ms": float(np.max(np.abs(paired))) if paired else float("nan"),
        "pickup_mean_ms": float(np.mean(pickup)) if pickup else float("nan"),
        "delivery_median_ms": float(np.median(deliv)),
        "delivery_p99_ms": float(np.percentile(deliv, 99)),
        "errors": s["errors"],
    }
    return out, truth


def _peer_bin(a, name: str) -> str | None:
    path = Path(a.peer_venv or "", "bin", name) if a.peer_venv else shutil.which(name)
    return str(path) if path and Path(path).exists() else None


def _window_truth(a, t0: float, n: int) -> list[dict]:
    # Peers send no id we can match; take their last n requests received after t0
    # (vllm bench sends one extra test request first).
    recent = sorted(
        (t for t in read_truth(a.truth_path) if t["recv_time"] >= t0), key=lambda t: t["recv_time"]
    )
    return recent[-n:]


def run_vllm(url: str, c: int, n: int, a, work: Path) -> tuple[dict, list[dict]] | None:
    exe = _peer_bin(a, "vllm")
    if exe is None:
        return None
    res = f"vllm-c{c}.json"
    cmd = [
        exe,
        "bench",
        "serve",
        "--backend",
        "vllm",
        "--base-url",
        url,
        "--model",
        MODEL,
        "--tokenizer",
        str(a.tokenizer_dir),
        "--dataset-name",
        "random",
        "--random-input-len",
        str(a.input_len),
        "--random-output-len",
        str(a.output_len),
        "--num-prompts",
        str(n),
        "--max-concurrency",
        str(c),
        "--request-rate",
        "inf",
        "--ignore-eos",
        "--seed",
        str(a.seed),
        "--save-result",
        "--result-dir",
        str(work),
        "--result-filename",
        res,
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,90,99",
    ]
    t0, cpu0 = time.perf_counter(), child_cpu()
    subprocess.run(
        cmd,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    cpu = child_cpu() - cpu0
    r = json.loads((work / res).read_text())
    m = {
        "ttft_mean_ms": r["mean_ttft_ms"],
        "tpot_mean_ms": r["mean_tpot_ms"],
        "itl_p99_ms": r["p99_itl_ms"],
        "output_throughput": r["output_throughput"],
    }
    return {
        "client_metrics": m,
        "process_cpu_s": cpu,
        "client_cpu_s": float("nan"),
        "client_wall_s": r["duration"],
    }, _window_truth(a, t0, n)


def run_guidellm(url: str, c: int, n: int, a, work: Path) -> tuple[dict, list[dict]] | None:
    exe = _peer_bin(a, "guidellm")
    if exe is None:
        return None
    res = work / f"guidellm-c{c}.json"
    # GuideLLM's CLI moves between releases; these are the 0.3+ names.
    cmd = [
        exe,
        "benchmark",
        "--target",
        url,
        "--model",
        MODEL,
        "--processor",
        str(a.tokenizer_dir),
        "--profile",
        "concurrent",
        "--rate",
        str(c),
        "--max-requests",
        str(n),
        "--data",
        f"prompt_tokens={a.input_len},output_tokens={a.output_len}",
        "--output-path",
        str(res),
    ]
    t0, cpu0 = time.perf_counter(), child_cpu()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    cpu = child_cpu() - cpu0
    b = json.loads(res.read_text())["benchmarks"][0]["metrics"]

    def stat(key, s):
        return b[key]["successful"][s] if key in b else float("nan")

    m = {
        "ttft_mean_ms": stat("time_to_first_token_ms", "mean"),
        "tpot_mean_ms": stat("inter_token_latency_ms", "mean"),  # GuideLLM ITL == our TPOT
        "itl_p99_ms": float("nan"),  # no per-chunk gap metric in GuideLLM
        "output_throughput": stat("output_tokens_per_second", "mean"),
    }
    return {
        "client_metrics": m,
        "process_cpu_s": cpu,
        "client_cpu_s": float("nan"),
        "client_wall_s": float("nan"),
    }, _window_truth(a, t0, n)


def make_tokenizer(path: Path) -> None:
    """A tiny offline HF tokenizer for peers that insist on one (timing is all we compare)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        ["the quick brown fox jumps over the lazy dog " * 50],
        trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"]),
    )
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(path)


RUNNERS = {"ours": run_ours, "vllm": run_vllm, "guidellm": run_guidellm}


def compare(client: dict, truth: list[dict]) -> dict:
    cm, tm = client["client_metrics"], compute_metrics(truth_records(truth)).as_dict()
    row = {}
    for key in ("ttft_mean_ms", "tpot_mean_ms", "itl_p99_ms"):
        err = cm[key] - tm[key]
        row |= {
            f"{key}_client": cm[key],
            f"{key}_truth": tm[key],
            f"{key}_err": err,
            f"{key}_err_pct": 100.0 * err / tm[key] if tm[key] else float("nan"),
        }
    wall = client["client_wall_s"]
    row |= {
        "output_tok_s": cm["output_throughput"],
        "client_cpu_pct": 100.0 * client["client_cpu_s"] / wall if wall else float("nan"),
        "process_cpu_s": client["process_cpu_s"],
        "server_late_chunk_frac": (
            sum(t["late_chunks"] for t in truth) / max(1, sum(len(t["chunk_times"]) for t in truth))
        ),
        "server_max_lag_ms": max((t["max_lag_ms"] for t in truth), default=0.0),
        "truth_n": len(truth),
    }
    for k in (
        "ttft_paired_err_mean_ms",
        "ttft_paired_err_absmax_ms",
        "pickup_mean_ms",
        "delivery_median_ms",
        "delivery_p99_ms",
    ):
        if k in client:
            row[k] = client[k]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="ours")
    ap.add_argument("--peer-venv", default=None, help="venv holding vllm / guidellm")
    ap.add_argument("--concurrency", default="1,16,64,256,1024")
    ap.add_argument("--quick", action="store_true", help="1 and 16 streams, fewer requests")
    ap.add_argument("--rounds", type=int, default=2, help="requests per stream (>= 8 total)")
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
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="qb-acc-"))
    a.truth_path = str(work / "truth.jsonl")
    a.tokenizer_dir = work / "tokenizer"
    clients = a.clients.split(",")
    if set(clients) - {"ours"}:
        make_tokenizer(a.tokenizer_dir)
    rows = []
    with start_refserver(
        "--ttft-ms",
        str(a.ttft_ms),
        "--itl-ms",
        str(a.itl_ms),
        "--workers",
        str(a.workers),
        "--truth-log",
        a.truth_path,
    ) as url:
        for client in clients:
            for c in levels:
                n = max(min_n, c * (1 if a.quick else a.rounds))
                res = RUNNERS[client](url, c, n, a, work)
                if res is None:
                    print(f"# {client}: not installed, skipped", file=sys.stderr)
                    break
                row = {"client": client, "concurrency": c, "requests": n, **compare(*res)}
                rows.append(row)
                print(f"# {client} c={c}: done ({row['truth_n']} truth records)", file=sys.stderr)
    hdr = (
        "client",
        "conc",
        "TTFT ms",
        "err ms",
        "err %",
        "TPOT ms",
        "err ms",
        "err %",
        "ITLp99",
        "err ms",
        "err %",
        "tok/s",
        "CPU %",
        "late%",
    )
    fmt = "{:<8} {:>5} " + " ".join(["{:>8}"] * 12)
    print(fmt.format(*hdr))
    for r in rows:
        vals = []
        for k in ("ttft_mean_ms", "tpot_mean_ms", "itl_p99_ms"):
            vals += [
                f"{r[k + '_client']:.2f}",
                f"{r[k + '_err']:+.3f}",
                f"{r[k + '_err_pct']:+.2f}",
            ]
        print(
            fmt.format(
                r["client"],
                r["concurrency"],
                *vals,
                f"{r['output_tok_s']:.0f}",
                f"{r['client_cpu_pct']:.0f}",
                f"{100 * r['server_late_chunk_frac']:.2f}",
            )
        )
    for r in rows:
        if "ttft_paired_err_mean_ms" in r:
            print(
                f"# {r['client']} c={r['concurrency']}: paired TTFT error mean "
                f"{r['ttft_paired_err_mean_ms']:+.3f} ms, |max| "
                f"{r['ttft_paired_err_absmax_ms']:.3f} ms = pickup {r['pickup_mean_ms']:.3f}"
                f" + delivery; chunk delivery median {r['delivery_median_ms']:.3f} ms,"
                f" p99 {r['delivery_p99_ms']:.3f} ms"
            )
    (out / "client_accuracy.json").write_text(json.dumps(rows, indent=1))
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "client_accuracy.csv", index=False)
    print(f"# wrote {out}/client_accuracy.json and .csv; raw data in {work}")


if __name__ == "__main__":
    main()
