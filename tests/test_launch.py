from pathlib import Path

import pytest

from quantbench.engines.launch import PORT_PLACEHOLDER, LaunchSpec, build_launch
from quantbench.engines.sglang.launch import SGLANG_KEYS, sglang_launch
from quantbench.engines.vllm.launch import VLLM_KEYS, vllm_launch


def test_vllm_awq_marlin_single_gpu():
    spec = vllm_launch(
        "/models/Qwen3-8B-AWQ",
        "qwen3-8b-awq",
        {
            "dtype": "half",
            "max_model_len": 2048,
            "gpu_memory_utilization": 0.96,
            "tensor_parallel_size": 1,
            "quantization": "awq_marlin",
        },
    )
    assert spec == LaunchSpec(
        "vllm",
        [
            "vllm",
            "serve",
            "/models/Qwen3-8B-AWQ",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--served-model-name",
            "qwen3-8b-awq",
            "--dtype",
            "half",
            "--max-model-len",
            "2048",
            "--gpu-memory-utilization",
            "0.96",
            "--tensor-parallel-size",
            "1",
            "--quantization",
            "awq_marlin",
        ],
        {"VLLM_USE_FLASHINFER_SAMPLER": "0"},
        "{port}",
    )


def test_vllm_tp8_expert_parallel_dummy_weights_and_extras():
    spec = vllm_launch(
        "/m/Qwen3-235B-A22B-FP8",
        "q235",
        {
            "tensor_parallel_size": 8,
            "expert_parallel_size": 8,
            "quantization": "fp8",
            "load_format": "dummy",
            "chunked_prefill": True,
            "tokenizer": "/m/tok",
            "skip_tokenizer_init": False,
            "extra_args": ["--max-num-seqs", "1"],
        },
    )
    assert spec.cmd[7:] == [
        "--served-model-name",
        "q235",
        "--tensor-parallel-size",
        "8",
        "--enable-expert-parallel",
        "--quantization",
        "fp8",
        "--load-format",
        "dummy",
        "--enable-chunked-prefill",
        "--tokenizer",
        "/m/tok",
        "--max-num-seqs",
        "1",
    ]
    assert spec.cmd.count(PORT_PLACEHOLDER) == 1


def test_vllm_chunked_prefill_off_is_explicit_and_none_means_default():
    off = vllm_launch("/m", "m", {"chunked_prefill": False})
    assert "--no-enable-chunked-prefill" in off.cmd
    unset = vllm_launch("/m", "m", {"chunked_prefill": None, "dtype": None})
    assert not any("chunked" in a or a == "--dtype" for a in unset.cmd)


def test_vllm_cpu_env():
    spec = vllm_launch("/m", "m", {"max_model_len": 512}, device="cpu")
    assert spec.env == {"VLLM_USE_FLASHINFER_SAMPLER": "0", "VLLM_CPU_KVCACHE_SPACE": "4"}
    spec = vllm_launch("/m", "m", {"cpu_kvcache_space_gib": 8}, device="cpu")
    assert spec.env["VLLM_CPU_KVCACHE_SPACE"] == "8"
    with pytest.raises(ValueError, match="device='cpu'"):
        vllm_launch("/m", "m", {"cpu_kvcache_space_gib": 8})


def test_vllm_rejects_ep_size_it_cannot_express():
    with pytest.raises(ValueError, match="expert_parallel_size=2"):
        vllm_launch("/m", "m", {"tensor_parallel_size": 8, "expert_parallel_size": 2})


def test_sglang_published_qwen3_speed_benchmark_settings():
    # Qwen3 "Speed Benchmark" (seed 002): mem_fraction_static=0.85, context_length=140000,
    # enable_mixed_chunk=True, awq_marlin for AWQ, skip_tokenizer_init=True.
    spec = build_launch(
        "sglang",
        "/models/Qwen3-8B-AWQ",
        "qwen3-8b-awq",
        {
            "mem_fraction_static": 0.85,
            "context_length": 140000,
            "mixed_chunk": True,
            "quantization": "awq_marlin",
            "skip_tokenizer_init": True,
            "tensor_parallel_size": 1,
        },
    )
    assert spec.engine == "sglang" and spec.env == {}
    assert spec.cmd == [
        "python",
        "-m",
        "sglang.launch_server",
        "--model-path",
        "/models/Qwen3-8B-AWQ",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--served-model-name",
        "qwen3-8b-awq",
        "--context-length",
        "140000",
        "--mem-fraction-static",
        "0.85",
        "--tp-size",
        "1",
        "--quantization",
        "awq_marlin",
        "--enable-mixed-chunk",
        "--skip-tokenizer-init",
        "--enable-metrics",  # always: the sweep scenario scrapes /metrics
    ]


def test_sglang_tp8_ep2_fp8_like_seed003():
    spec = sglang_launch(
        "/m/Qwen3-235B-A22B-Instruct-2507-FP8",
        "q235",
        {
            "dtype": "bfloat16",
            "max_model_len": 32768,
            "tensor_parallel_size": 8,
            "expert_parallel_size": 2,
            "load_format": "dummy",
            "tokenizer": "/m/tok",
            "chunked_prefill": False,
            "extra_args": ["--trust-remote-code"],
        },
        python="/envs/sglang/bin/python",
    )
    assert spec.cmd[0] == "/envs/sglang/bin/python"
    assert spec.cmd[9:] == [
        "--served-model-name",
        "q235",
        "--dtype",
        "bfloat16",
        "--context-length",
        "32768",
        "--tp-size",
        "8",
        "--ep-size",
        "2",
        "--load-format",
        "dummy",
        "--chunked-prefill-size",
        "-1",
        "--tokenizer-path",
        "/m/tok",
        "--enable-metrics",
        "--trust-remote-code",
    ]


def test_sglang_max_model_len_must_agree_with_context_length():
    assert (
        "--context-length"
        in sglang_launch("/m", "m", {"context_length": 8, "max_model_len": 8}).cmd
    )
    with pytest.raises(ValueError, match="disagrees"):
        sglang_launch("/m", "m", {"context_length": 8, "max_model_len": 16})


@pytest.mark.parametrize(
    "engine, key, allowed",
    [
        ("vllm", "mixed_chunk", VLLM_KEYS),
        ("vllm", "mem_fraction_static", VLLM_KEYS),
        ("sglang", "gpu_memory_utilization", SGLANG_KEYS),
        ("sglang", "typo_key", SGLANG_KEYS),
    ],
)
def test_unknown_keys_name_the_key_and_the_allowed_ones(engine, key, allowed):
    with pytest.raises(ValueError) as err:
        build_launch(engine, "/m", "m", {key: 1})
    assert key in str(err.value)
    assert all(k in str(err.value) for k in allowed)


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"mixed_chunk": "yes"}, "mixed_chunk"),
        ({"extra_args": "--foo bar"}, "extra_args"),
        ({"extra_args": ["--x", 1]}, "extra_args"),
    ],
)
def test_type_errors(settings, match):
    with pytest.raises(ValueError, match=match):
        sglang_launch("/m", "m", settings)


def test_unknown_engine():
    with pytest.raises(ValueError, match="transformers"):
        build_launch("transformers", "/m", "m", {})


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_env_setting_reaches_the_server_and_rejects_non_strings(engine):
    spec = build_launch(engine, "/m", "m", {"env": {"SGLANG_ENABLE_JIT_DEEPGEMM": "0"}})
    assert spec.env["SGLANG_ENABLE_JIT_DEEPGEMM"] == "0"
    assert not any("DEEPGEMM" in a for a in spec.cmd)
    with pytest.raises(ValueError, match="quote numbers"):
        build_launch(engine, "/m", "m", {"env": {"SGLANG_ENABLE_JIT_DEEPGEMM": 0}})


ROOT = Path(__file__).resolve().parent.parent


def _sglang_flags_0_5_17() -> set[str]:
    path = Path(__file__).parent / "data" / "sglang-0.5.17-server-flags.txt"
    return {ln for ln in path.read_text().splitlines() if ln.startswith("--")}


def test_every_sglang_flag_we_emit_exists_in_the_staged_sglang():
    """The flags the sglang engine builds, for every setting it takes, and the extra_args of
    the shipped configs (the published grid's TP/EP cells, the lent-GPU overlays) are all
    SGLang 0.5.17 server flags — the version the lent GPU runs."""
    import yaml

    from quantbench.engines import get_engine

    known = _sglang_flags_0_5_17()
    settings = {
        "device": "cuda",
        "dtype": "bfloat16",
        "context_length": 140000,
        "mem_fraction_static": 0.85,
        "tensor_parallel_size": 8,
        "expert_parallel_size": 2,  # as the published 235B batch run: --tp 8 --ep 2
        "chunked_prefill": False,
        "mixed_chunk": True,
        "skip_tokenizer_init": True,
        "tokenizer": "/tok",
    }
    engine = get_engine("sglang")(settings)
    cmd = engine.launch_spec("/ckpt", False, "fp8", "m")["cmd"]
    emitted = {a for a in cmd if a.startswith("--")}
    assert {"--tp-size", "--ep-size", "--disable-radix-cache", "--enable-cache-report"} <= emitted
    configs = sorted((ROOT / "config" / "examples").glob("*.yaml"))
    for path in configs:
        cfg = yaml.safe_load(path.read_text()) or {}
        for name, engine in (cfg.get("engines") or {}).items():
            if (engine or {}).get("kind", name) == "sglang":
                emitted |= {a for a in engine.get("extra_args") or [] if a.startswith("--")}
    unknown = sorted(emitted - known)
    assert not unknown, f"not SGLang 0.5.17 server flags: {unknown}"
