"""The llamacpp engine for real: llama.cpp's llama-server serves the tiny model's GGUF
quantization through the workflow (single, serving and batch scenarios), cache-free with each
request's cached tokens reported, its start-up facts parsed from its own log.

Needs a built llama-server (`python -m quantbench.engines.llamacpp.build`, which CI's .ci/run
runs; or QUANTBENCH_LLAMA_SERVER); the workflow test is skipped with the reason otherwise.
"""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from quantbench.engines.llamacpp.build import find_server
from quantbench.engines.llamacpp.logfacts import parse_llamacpp_log
from quantbench.status import Status
from tests.test_e2e import copy_workflow, snakemake

DATA = Path(__file__).parent / "data" / "llamacpp"
SERVER = find_server()


def test_startup_facts_from_a_real_log():
    """llama-server (llama-cpp-python 0.3.36's tree) on the tiny model's Q8_0 GGUF,
    --ctx-size 1024 --log-verbosity 4."""
    facts = parse_llamacpp_log((DATA / "llama-server-startup.log").read_text())
    assert facts["weights_gib"]["value"] * 1024 == pytest.approx(4.53)
    assert facts["kv_cache_gib"]["value"] * 1024 == pytest.approx(2.0)
    assert facts["kv_cache_tokens"]["value"] == facts["context_tokens"]["value"] == 1024
    assert facts["max_running_requests"]["value"] == 4
    assert facts["engine_version"]["value"] == "llama.cpp build 0 (unknown)"


def test_launch_turns_the_prompt_cache_off_and_serves_the_gguf(tmp_path):
    from quantbench.engines import get_engine

    (tmp_path / "model-Q8_0.gguf").write_bytes(b"")
    engine = get_engine("llamacpp")({"executable": "llama-server", "ctx_size": 512})
    launch = engine.launch_spec(str(tmp_path), True, "gguf", "m-q8")
    cmd = launch["cmd"]
    assert cmd[:3] == ["llama-server", "--model", str(tmp_path / "model-Q8_0.gguf")]
    assert {"--no-cache-prompt", "--metrics"} <= set(cmd) and "--ctx-size" in cmd
    assert cmd[cmd.index("--cache-ram") + 1] == "0" and "--quantization" not in cmd
    assert launch["prefix_cache"]["prefix_caching"] is False


@pytest.mark.skipif(
    SERVER is None,
    reason="no llama-server: run `python -m quantbench.engines.llamacpp.build` "
    "(about 10 min on 2 cores; .ci/run does) or set QUANTBENCH_LLAMA_SERVER",
)
def test_llamacpp_serves_the_tiny_models_gguf_through_the_workflow(tmp_path):
    work = copy_workflow(tmp_path)
    cfg = {
        "models": {"tiny-qwen3": {"source": "tiny", "seed": 0}},
        "quantizations": {
            "bf16": {"method": "bf16"},  # not GGUF: left out for llamacpp, with the reason
            "gguf-q8_0": {"method": "gguf", "type": "Q8_0", "fallback_pre_tokenizer": "gpt-2"},
        },
        "engines": {
            "llamacpp": {
                "executable": str(SERVER),
                "ctx_size": 1024,
                "parallel": 2,
                "ready_timeout_s": 120,
                "request_timeout_s": 120,
            }
        },
        "sweep": {"models": "all", "quantizations": "all", "engines": "all"},
        "benchmark": {
            "scenarios": ["single", "serving", "batch"],
            "single": {"input_lengths": [1, 16, 128], "output_len": 8, "repeats": 2, "warmup": 1},
            "serving": {"num_prompts": 8, "input_len": 32, "output_len": 8, "request_rate": 8},
            "batch": {"batch_sizes": [1, 2], "input_len": 32, "output_len": 32},
        },
        "evaluation": {"enabled": False},
    }
    (work / "llamacpp.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(work, "--configfile", "llamacpp.yaml", timeout=900)
    assert "engine 'llamacpp' cannot load format 'bf16'" in proc.stderr

    cell = work / "results/bench/tiny-qwen3/gguf-q8_0/llamacpp"
    single = json.loads((cell / "single.json").read_text())
    assert [r["status"] for r in single["rows"]] == [Status.OK] * 6, single["rows"]  # 3 x 2 repeats
    assert [r["prompt_tokens"] for r in single["rows"]] == [1, 1, 16, 16, 128, 128]
    # Cache-free, and proven: every request reports its cached prompt tokens, all 0.
    assert {r["cached_tokens"] for r in single["records"]} == {0}
    for name in ("serving", "batch"):
        doc = json.loads((cell / f"{name}.json").read_text())
        assert doc["status"] == Status.OK, doc
        assert {r["cached_tokens"] for r in doc["records"]} == {0}
    facts = json.loads((cell / "engine.json").read_text())["startup"]
    assert facts["kv_cache_tokens"]["value"] == 1024 and facts["weights_gib"]["value"] > 0
    assert facts["max_running_requests"]["value"] == 2
    speed = pd.read_csv(work / "results/report/speed.csv")
    assert set(speed["engine"]) == {"llamacpp"} and set(speed["input_len"]) == {1, 16, 128}
    if os.environ.get("QB_LLAMACPP_TABLE"):  # the table, for the record of a run
        print((work / "results/report/speed.md").read_text())
