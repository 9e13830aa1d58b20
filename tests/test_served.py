"""Served engines: launch specs, and the whole server path (start, scenarios in sequence through
the streaming client, stop with no process left) against the reference server standing in for
vLLM/SGLang (their real servers need a GPU or a 3 GB CPU build; see README for the real runs)."""

import contextlib
import io
import json
import os
import sys
from pathlib import Path

import pytest

from quantbench.client.prompts import PromptSource, longest_shared_prefix
from quantbench.engines.sglang import SGLangEngine
from quantbench.engines.vllm import VLLMEngine
from quantbench.models import build_tokenizer
from quantbench.refserver import read_truth
from quantbench.scenarios.batch import run_batch
from quantbench.scenarios.serving import run_serving
from quantbench.scenarios.single import logged_rows, run_single
from quantbench.status import Status


def test_dummy_weights_and_kernel_flags():
    engine = VLLMEngine({"device": "cpu", "max_model_len": 2048})
    spec = engine.launch_spec("/ckpt", has_weights=False, kernel="fp8", name="m-fp8")
    cmd = spec["cmd"]
    assert cmd[:3] == ["vllm", "serve", "/ckpt"]
    assert cmd[cmd.index("--load-format") + 1] == "dummy"
    assert cmd[cmd.index("--quantization") + 1] == "fp8"
    assert spec["env"]["VLLM_CPU_KVCACHE_SPACE"]  # CPU runs get a fixed KV budget
    # compressed-tensors and BF16 checkpoints carry their own config: no --quantization flag
    for kernel in ("compressed-tensors", "none"):
        cmd = engine.launch_spec("/ckpt", True, kernel, "m")["cmd"]
        assert "--quantization" not in cmd and "--load-format" not in cmd


def test_sglang_awq_marlin_and_gguf(tmp_path):
    engine = SGLangEngine({"device": "cuda", "mem_fraction_static": 0.85, "mixed_chunk": True})
    cmd = engine.launch_spec("/ckpt", True, "awq_marlin", "m")["cmd"]
    assert cmd[cmd.index("--quantization") + 1] == "awq_marlin"
    assert "--enable-mixed-chunk" in cmd
    (tmp_path / "model-Q8_0.gguf").write_bytes(b"GGUF")
    cmd = engine.launch_spec(str(tmp_path), True, "gguf", "m")["cmd"]
    assert cmd[cmd.index("--model-path") + 1].endswith("model-Q8_0.gguf")
    assert cmd[cmd.index("--tokenizer-path") + 1] == str(tmp_path)
    assert cmd[cmd.index("--load-format") + 1] == "gguf"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(1024)


def test_prefix_cache_off_and_reported_by_default():
    vllm = VLLMEngine({"device": "cpu"}).launch_spec("/ckpt", True, "none", "m")
    assert "--no-enable-prefix-caching" in vllm["cmd"]
    assert "--enable-prompt-tokens-details" in vllm["cmd"]
    assert vllm["prefix_cache"]["prefix_caching"] is False
    sglang = SGLangEngine({"device": "cuda"}).launch_spec("/ckpt", True, "none", "m")
    assert "--disable-radix-cache" in sglang["cmd"] and "--enable-cache-report" in sglang["cmd"]
    # the config switch turns the cache back on, and the reports stay
    on = VLLMEngine({"device": "cpu", "prefix_caching": True}).launch_spec("/c", True, "none", "m")
    assert "--enable-prefix-caching" in on["cmd"] and "--no-enable-prefix-caching" not in on["cmd"]
    assert on["prefix_cache"]["prefix_caching"] is True
    sglang_on = SGLangEngine({"device": "cuda", "prefix_caching": True})
    on = sglang_on.launch_spec("/c", True, "none", "m")
    assert "--disable-radix-cache" not in on["cmd"] and "--enable-cache-report" in on["cmd"]


def test_prompts_of_a_run_share_no_prefix(tokenizer):
    source = PromptSource(tokenizer)
    # the old scheme: seed + repeat for every length, so longer prompts extended shorter ones
    lengths = [1, 8, 64, 256]
    for n in lengths:
        for rep in range(3):
            source.prompt(n, 0, "single", n, rep)
    for b in (1, 8):
        for i in range(b):
            source.prompt(32, 0, "batch", b, i)
    prompts = [ids for _, ids in source.issued]
    assert len(prompts) == 12 + 9
    assert [len(p) for p in prompts[:12]] == [n for n in lengths for _ in range(3)]
    assert longest_shared_prefix(prompts) == 0
    # the same place in the run draws the same prompt
    again = PromptSource(tokenizer)
    assert again.prompt(64, 0, "single", 64, 0) == prompts[6]


def test_scenarios_in_sequence_against_one_server(tmp_path, tokenizer, capfd):
    engine = VLLMEngine({"device": "cpu", "request_timeout_s": 60})
    launch = {
        "served_model_name": "ref",
        "cmd": [
            sys.executable,
            "-m",
            "quantbench.refserver",
            "--port",
            "{port}",
            "--model",
            "ref",
            "--ttft-ms",
            "5",
            "--itl-ms",
            "1",
            "--prefix-cache",
            "--cache-report",
            "--log-prompts",
            "--truth-log",
            str(tmp_path / "truth.jsonl"),
        ],
        "env": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        "ready_timeout_s": 60,
    }
    prompts = PromptSource(tokenizer)
    with engine.serve(launch, str(tmp_path / "server.log")) as server:
        pgid = server.pgid
        facts = engine.startup_facts()
        job_log = io.StringIO()  # where jobs.logged sends a job's stderr
        settings = {"input_lengths": [1, 40], "output_len": 12, "repeats": 2, "warmup": 1}
        with contextlib.redirect_stderr(job_log):
            single, raw, single_ran = run_single(engine, prompts, settings, progress=False)
        # Each request's row is in the job's log as it finishes (read back if the job is cut),
        # and on the terminal.
        logged = logged_rows(job_log.getvalue())
        shown = [
            json.loads(line.removeprefix("single "))
            for line in capfd.readouterr().err.splitlines()
            if line.startswith("single {")
        ]
        serving, _, serving_ran = run_serving(
            engine,
            prompts,
            {
                "request_rate": 50,
                "max_concurrency": 4,
                "num_prompts": 12,
                "input_len": 16,
                "output_len": 8,
                "range_ratio": 0.5,
                "burstiness": 1.0,
                "warmup": 1,
                "seed": 0,
            },
            progress=False,
        )
        batch, _, batch_ran = run_batch(
            engine,
            prompts,
            {
                "batch_sizes": [1, 4],
                "input_len": 32,
                "output_len": 6,
                "seed": 0,
            },
            progress=False,
        )
    assert facts["startup_s"]["value"] > 0
    assert [r["status"] for r in single] == [Status.OK] * 4
    # the server's own usage counts confirm exact prompt and output lengths
    assert {(r["input_len"], r["prompt_tokens"], r["output_tokens"]) for r in single} == {
        (1, 1, 12),
        (40, 40, 12),
    }
    # the server waits 5 ms before the first token; a catching-up schedule may bunch the rest
    assert all(r["ttft_ms"] >= 4.5 and r["tpot_ms"] > 0 for r in single)
    assert len(raw) == 4 and all(len(r["token_times"]) == 12 for r in raw)
    assert logged == single and shown == single
    (row,) = serving
    assert row["status"] == Status.OK and row["completed"] == 12 and row["failed"] == 0
    assert row["total_output_tokens"] == 12 * 8
    assert [b["status"] for b in batch] == [Status.OK, Status.OK]
    assert batch[1]["input_throughput_tok_s"] > 0 and batch[1]["latency_s"] > batch[1]["prefill_s"]
    with pytest.raises(ProcessLookupError):  # the whole process group is gone
        os.killpg(pgid, 0)
    # warm-up per shape: one request per input length, one batch per batch size
    assert single_ran == {"warmup_requests": 1 + 2}
    assert serving_ran == {"warmup_requests": 1} and batch_ran == {"warmup_requests": 1 + 4}
    # cache-free, and proven: the server (its prefix cache on) saw no prompt twice, no prompt
    # began another, and every measured record carries the engine's cached-token count of 0
    truth = read_truth(str(tmp_path / "truth.jsonl"))
    assert len(truth) == 3 + 4 + 1 + 12 + 5 + 5
    assert longest_shared_prefix([t["prompt_ids"] for t in truth]) == 0
    assert all(t["cached_tokens"] == 0 for t in truth)
    assert all(r["cached_tokens"] == 0 for r in raw)
    assert all(r["cached_tokens"] == 0 and r["cache_hit"] is False for r in single)
    assert row["cached_tokens"] == 0 and row["cache_hits"] == 0 and row["cache_unreported"] == 0
    assert all(b["cached_tokens"] == 0 and b["cache_hits"] == 0 for b in batch)


def test_a_crashing_server_fails_the_cell_with_its_log(tmp_path):
    engine = VLLMEngine({"device": "cpu"})
    launch = {
        "served_model_name": "x",
        "env": {},
        "ready_timeout_s": 30,
        "cmd": [sys.executable, "-c", "import sys; print('no kernel for WNA16'); sys.exit(3)"],
    }
    with pytest.raises(Exception, match="exited with code 3") as err:
        with engine.serve(launch, str(tmp_path / "server.log")):
            pass
    assert "no kernel for WNA16" in str(err.value)


def test_external_openai_endpoint_is_measured_not_launched(tmp_path, tokenizer):
    from quantbench.engines.server import ManagedServer

    cmd = [
        sys.executable,
        "-m",
        "quantbench.refserver",
        "--port",
        "{port}",
        "--model",
        "ext",
        "--ttft-ms",
        "5",
        "--itl-ms",
        "1",
    ]
    env = {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with ManagedServer(cmd, env=env, log_path=tmp_path / "ext.log", ready_timeout_s=60) as srv:
        from quantbench.engines.openai import ExternalEngine

        engine = ExternalEngine({"base_url": srv.base_url + "/v1", "model": "ext"})
        launch = engine.launch_spec("/tok", True, "external", "ignored")
        assert "cmd" not in launch and launch["served_model_name"] == "ext"
        with engine.serve(launch, str(tmp_path / "unused.log")):
            rows, _, _ = run_single(
                engine,
                PromptSource(tokenizer),
                {"input_lengths": [8], "output_len": 5, "repeats": 1, "seed": 0},
                progress=False,
            )
        assert srv.proc.poll() is None  # the workflow stopped nothing
    assert rows[0]["status"] == Status.OK and rows[0]["output_tokens"] == 5
    assert not (tmp_path / "unused.log").exists()


def test_compile_cache_reaches_the_server_and_a_second_start_is_warm(tmp_path):
    """`compile_cache` points the engine's kernel caches into one directory (the config's own
    `env` wins); each start records how many files it found there, so a cold start (0: it
    compiled) tells itself apart from a warm one in the engine table."""
    cache = tmp_path / "cc"
    settings = {"device": "cuda", "compile_cache": str(cache), "env": {"TRITON_CACHE_DIR": "/t"}}
    spec = SGLangEngine(settings).launch_spec("/ckpt", True, "none", "m")
    assert spec["env"]["TVM_FFI_CACHE_DIR"] == str(cache / "tvm-ffi")
    assert spec["env"]["SGLANG_DG_CACHE_DIR"] == str(cache / "deep_gemm")
    assert spec["env"]["TRITON_CACHE_DIR"] == "/t"
    vllm = VLLMEngine({"device": "cpu", "compile_cache": str(cache)})
    assert vllm.launch_spec("/ckpt", True, "none", "m")["env"]["VLLM_CACHE_ROOT"] == str(
        cache / "vllm"
    )
    assert (
        "VLLM_CACHE_ROOT"
        not in VLLMEngine({"device": "cpu"}).launch_spec("/ckpt", True, "none", "m")["env"]
    )

    # A server that compiles into its cache on start, as the engines' JIT libraries do.
    launch = vllm.launch_spec("/ckpt", True, "none", "ref")
    compiles = 'mkdir -p "$VLLM_CACHE_ROOT" && echo k > "$VLLM_CACHE_ROOT/k-$$.bin" && exec "$@"'
    launch["cmd"] = ["sh", "-c", compiles, "sh", sys.executable, "-m", "quantbench.refserver"]
    launch["cmd"] += ["--port", "{port}", "--model", "ref"]
    launch["env"]["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    launch["ready_timeout_s"] = 60
    found = []
    for start in range(2):
        with vllm.serve(launch, str(tmp_path / f"server{start}.log")):
            found.append(vllm.startup_facts()["compile_cache_files"]["value"])
    assert found == [0, 1]
