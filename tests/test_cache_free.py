"""Every measured request is cache-free and proves it (issue 18): the real workflow on the tiny
model against a served engine — the reference server standing in for `vllm serve`, which reads
vLLM's cache flags as vLLM does (prefix caching on unless `--no-enable-prefix-caching`; cached
tokens in `usage.prompt_tokens_details` with `--enable-prompt-tokens-details`) and serves shared
prefixes from a cache of the prompts it has seen. Its truth log keeps every prompt it received.
"""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_e2e import copy_workflow, snakemake

from quantbench.client.prompts import longest_shared_prefix
from quantbench.refserver import read_truth

CELL = "results/bench/tiny/bf16/vllm"


def _config(work: Path, prefix_caching: bool) -> None:
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg.pop("sweep", None)
    cfg["models"] = {"tiny": {"source": "tiny", "seed": 0}}
    cfg["quantizations"] = {"bf16": {"method": "bf16"}}
    cfg["engines"] = {
        "vllm": {
            "executable": "./fake-vllm",
            "device": "cpu",
            "ready_timeout_s": 60,
            "request_timeout_s": 30,
            "prefix_caching": prefix_caching,
            "extra_args": ["--faults-from", "server-args.json"],
        }
    }
    cfg["cells"] = [{"model": "tiny", "quantization": "bf16", "engine": "vllm"}]
    cfg["benchmark"] = {
        "scenarios": ["single", "serving", "batch"],
        # 64 extends 16 and 256 extends 64 under the old seed + repeat scheme
        "single": {"input_lengths": [16, 64, 256], "output_len": 4, "repeats": 3, "seed": 0},
        "serving": {"num_prompts": 12, "input_len": 32, "output_len": 4, "request_rate": 50},
        "batch": {"batch_sizes": [1, 4], "input_len": 48, "output_len": 4},
    }
    cfg["evaluation"] = {"enabled": False}
    (work / "cache.yaml").write_text(yaml.safe_dump(cfg))


def _server_args(work: Path, *extra: str) -> None:
    base = ["--ttft-ms", "2", "--itl-ms", "1", "--log-prompts", "--truth-log", "truth.jsonl"]
    (work / "server-args.json").write_text(json.dumps({"*": [*base, *extra]}))
    (work / "truth.jsonl").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("cache"))
    shim = work / "fake-vllm"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m quantbench.refserver "$@"\n')
    shim.chmod(0o755)
    return work


def _run(work: Path, *args: str) -> None:
    snakemake(work, "--configfile", "cache.yaml", *args)


def test_no_prompt_shares_a_prefix_and_every_record_proves_it(workflow):
    _config(workflow, prefix_caching=False)
    _server_args(workflow)
    _run(workflow)
    launch = json.loads((workflow / "results/serve/tiny/bf16/vllm/launch.json").read_text())
    assert "--no-enable-prefix-caching" in launch["cmd"]
    assert "--enable-prompt-tokens-details" in launch["cmd"]

    # What the server received: every request of the run, warm-ups included, in one log.
    truth = read_truth(str(workflow / "truth.jsonl"))
    single = 1 + 3 + 9  # one kernel warm-up, one per input length, three repeats of three
    serving = 2 + 12  # the warm-up pass (the schema's 2) and the load
    batch = (1 + 4) * 2  # one unmeasured batch of each size before the measured one
    assert len(truth) == single + serving + batch
    assert longest_shared_prefix([t["prompt_ids"] for t in truth]) == 0

    for scenario in ("single", "serving", "batch"):
        doc = json.loads((workflow / CELL / f"{scenario}.json").read_text())
        assert doc["prefix_cache"]["how"] == "--no-enable-prefix-caching"
        assert doc["warmup_requests"] > 0
        assert all(r["cached_tokens"] == 0 for r in doc["records"]), scenario
    speed = pd.read_csv(workflow / "results/report/speed.csv")
    assert (speed["cached_tokens"].astype(str) == "0").all()
    engine = pd.read_csv(workflow / "results/report/engine.csv")
    assert engine["warmup_requests"].iloc[0] == "batch 5, serving 2, single 4"


def test_prefix_cache_on_still_hits_nothing_and_a_planted_hit_is_flagged(workflow):
    # The cache switched back on: the run's own prompts still leave it nothing to serve.
    _config(workflow, prefix_caching=True)
    _server_args(workflow)
    _run(workflow, "--forcerun", "serve")
    launch = json.loads((workflow / "results/serve/tiny/bf16/vllm/launch.json").read_text())
    assert "--enable-prefix-caching" in launch["cmd"]
    assert all(t["cached_tokens"] == 0 for t in read_truth(str(workflow / "truth.jsonl")))

    # A cache the workflow failed to control: the server reports half of the 7th prompt (the
    # first measured request at 64 tokens) as cached. It reaches every table, never averaged in.
    _server_args(workflow, "--plant-cache-hit", "7")
    _run(workflow, "--forcerun", "benchmark")
    rows = json.loads((workflow / CELL / "single.json").read_text())["rows"]
    hit = [r for r in rows if r["cache_hit"]]
    assert [(r["input_len"], r["repeat"], r["cached_tokens"]) for r in hit] == [(64, 0, 32)]
    speed = pd.read_csv(workflow / "results/report/speed.csv").set_index("input_len")
    assert speed.loc[64, "cached_tokens"] == "CACHE HIT: 32 tokens in 1 of 3 requests"
    assert speed.loc[64, "speed_tok_s"].endswith("(cache hit)")
    assert speed.loc[16, "cached_tokens"] == "0" and speed.loc[256, "cached_tokens"] == "0"
    cells = pd.read_csv(workflow / "results/report/requests.csv")
    assert cells["cache_hit"].fillna(False).astype(bool).sum() == 1
