"""Re-derive token times of load-run records saved before the client counted a chunk with an
empty text as a token (commit c76e6f7), and rebuild their rows with the workflow's own code.

Why: a dummy model's small tokenizer decodes most drawn ids to "", and the client then took only
the few text-bearing chunks as tokens (TTFT and ITL wrong, some requests "without content").
Every chunk was still recorded with its kernel timestamp, so the token times can be re-derived:
where a record has the server's usage count and exactly one chunk more than that count (the
trailing usage chunk, `"choices": []`), every chunk before it was one generation step — what
the fixed client records. Records that do not fit that shape are left as they were and counted.

`single` results of that version kept only the text-bearing times, so they cannot be re-derived.

Usage: python benchmarks/device/retime_token_chunks.py RESULTS_DIR ENGINE
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from quantbench.bench import batch_row, load_row, scenario_status
from quantbench.client.stream import StreamRecord
from quantbench.engines.own_client import Workload
from quantbench.io import read_json, write_json

NOTE = (
    "token times re-derived from the recorded chunk times (benchmarks/device/"
    "retime_token_chunks.py): measured with a client that took only text-bearing chunks as tokens"
)


def retime(raw: dict) -> tuple[StreamRecord, bool]:
    rec = StreamRecord.from_dict(raw)
    if not (rec.usage_seen and len(rec.chunk_times) == rec.output_tokens + 1):
        return rec, False
    rec.token_times = rec.chunk_times[:-1]
    rec.chunk_content = [True] * rec.output_tokens + [False]
    if rec.error == "stream ended without content":
        rec.error = None
    return rec, True


def rebuild(doc: dict) -> dict:
    name = doc["scenario"]
    cfg = doc["provenance"]["settings"]["scenarios"][name]
    pairs = [retime(r) for r in doc["records"]]
    records = [rec for rec, _ in pairs]
    if name == "serving":
        rows = [load_row(records, cfg, scenario="serving")]
    elif name == "engine_client":
        workload = asdict(Workload.from_config(cfg))
        ours = load_row(records, workload, scenario="engine_client", client="quantbench")
        rows = [ours, *doc["rows"][1:]]  # the engine's own tool's row is its own output
    else:  # batch: one row per batch size, memory as measured then
        rows = []
        for old in doc["rows"]:
            base = {k: old[k] for k in ("scenario", "batch_size", "input_len", "output_len")}
            mine = [
                rec
                for rec, raw in zip(records, doc["records"])
                if raw["batch_size"] == old["batch_size"]
            ]
            memory = {k: v for k, v in old.items() if k in ("peak_mem_mb", "mem_method")}
            rows.append(batch_row(mine, base, memory))
    kept = sum(not ok for _, ok in pairs)
    return {
        **doc,
        "status": scenario_status(rows),
        "rows": rows,
        "records": [{**raw, **rec.to_dict()} for raw, rec in zip(doc["records"], records)],
        "reanalysis": {"note": NOTE, "retimed": len(pairs) - kept, "left_as_recorded": kept},
    }


def main(results: str, engine: str) -> None:
    for path in sorted(Path(results).glob(f"bench/*/*/{engine}/*.json")):
        doc = read_json(path)
        if doc.get("scenario") not in ("serving", "batch", "engine_client"):
            continue
        if doc["status"] == "skipped" or not doc.get("records") or "reanalysis" in doc:
            continue
        new = rebuild(doc)
        write_json(path, new)
        print(path, doc["status"], "->", new["status"], new["reanalysis"]["left_as_recorded"])


if __name__ == "__main__":
    main(*sys.argv[1:3])
