"""Log-fact parsers on real seed lines (tests/data/logs/*seed*.log, copied verbatim from
engines' start-up logs the project was given) and on lines built from the engines' format
strings (*source_derived*.log, inline strings below). Which is which is named in each test."""

from pathlib import Path

import pytest

from quantbench.engines.logfacts import parse_log, strip_ansi
from quantbench.engines.sglang.logfacts import parse_sglang_log
from quantbench.engines.vllm.logfacts import parse_vllm_log

LOGS = Path(__file__).parent / "data" / "logs"


def load(name: str) -> str:
    return (LOGS / name).read_text(encoding="utf-8")


def span(fact: dict) -> tuple:
    return fact["min"], fact["max"], fact["count"]


# --- real lines --------------------------------------------------------------------------------


def test_seed000_fp8_tp8_per_worker_figures():
    f = parse_vllm_log(load("vllm_tp8_fp8_seed000.log"))
    assert span(f["kv_cache_tokens"]) == (256_800, 257_664, 8)
    assert f["kv_cache_tokens"]["value"] == 256_800  # the scheduler's figure is the minimum
    assert isinstance(f["kv_cache_tokens"]["value"], int)
    assert span(f["max_concurrency"]) == (7.84, 7.86, 8)
    assert f["max_concurrency"]["tokens_per_request"] == 32_768
    assert span(f["available_kv_cache_gib"]) == (11.51, 11.55, 8)
    assert "Available KV cache memory" in f["available_kv_cache_gib"]["method"]
    # The excerpt holds only KV lines: nothing else may be invented.
    assert set(f) == {"engine", "kv_cache_tokens", "max_concurrency", "available_kv_cache_gib"}


def test_seed000_awq_tp8():
    f = parse_vllm_log(load("vllm_tp8_awq_seed000.log"))
    assert span(f["kv_cache_tokens"]) == (548_352, 549_232, 8)
    assert span(f["max_concurrency"]) == (16.73, 16.76, 8)
    assert span(f["available_kv_cache_gib"]) == (24.58, 24.62, 8)


def test_seed001_qwen3_8b_bf16_single_gpu():
    f = parse_vllm_log(load("vllm_l40_qwen3_8b_bf16_seed001.log"))
    assert f["weight_load_s"]["value"] == 67.00
    assert f["weights_gib"]["value"] == 15.2683
    assert f["model_load_s"]["value"] == pytest.approx(67.840160)
    assert f["torch_compile_s"]["value"] == 9.22
    assert f["available_kv_cache_gib"]["value"] == 23.33
    assert f["kv_cache_tokens"]["value"] == 169_856
    assert f["max_concurrency"]["value"] == 663.50
    assert f["max_concurrency"]["tokens_per_request"] == 256
    assert f["cuda_graph_capture_s"]["value"] == 24
    assert f["cuda_graph_gib"]["value"] == 0.60
    assert f["engine_version"]["value"] == "0.9.1"
    # The seed's "init engine (profil" line is cut off: no figure may come out of it.
    assert "engine_init_s" not in f


def test_seed001_llama70b_awq_marlin():
    f = parse_log("vllm", load("vllm_l40_llama70b_awq_seed001.log"))
    assert f["weight_load_s"]["value"] == 163.93
    assert f["weights_gib"]["value"] == 37.0909
    assert f["model_load_s"]["value"] == pytest.approx(169.567562)
    assert f["torch_compile_s"]["value"] == 87.58
    assert f["kv_cache_tokens"]["value"] == 3_216
    assert f["max_concurrency"]["value"] == 12.56
    assert f["available_kv_cache_gib"]["value"] == 0.99
    assert (f["cuda_graph_capture_s"]["value"], f["cuda_graph_gib"]["value"]) == (52, 1.25)


def test_seed001_qwen3_8b_fp8():
    f = parse_vllm_log(load("vllm_l40_qwen3_8b_fp8_seed001.log"))
    assert f["weights_gib"]["value"] == 8.8011
    assert f["weight_load_s"]["value"] == 38.22
    assert f["kv_cache_tokens"]["value"] == 216_944
    assert f["max_concurrency"]["value"] == 847.44


def test_cpu_build_one_line_from_brief():
    f = parse_vllm_log(load("vllm_cpu_oneline_brief.log"))
    assert f["kv_cache_tokens"]["value"] == 2_097_152
    assert "CPU KV cache size" in f["kv_cache_tokens"]["method"]
    assert f["max_concurrency"]["value"] == 4096.00
    assert f["max_concurrency"]["tokens_per_request"] == 512


def test_prefixes_and_ansi_on_a_real_line():
    line = (
        "(Worker_TP3_EP3 pid=8095) \x1b[0;36mINFO\x1b[0;0m 09-29 11:34:05 "
        "\x1b[2m[gpu_worker.py:298]\x1b[0m Available KV cache memory: 11.52 GiB\r\n"
    )
    assert strip_ansi(line).startswith("(Worker_TP3_EP3 pid=8095) INFO 09-29")
    assert parse_vllm_log(line)["available_kv_cache_gib"]["value"] == 11.52


# --- source-derived lines (vLLM 0.24.0, SGLang 0.5.9 format strings) ---------------------------


def test_vllm024_source_derived_tp2():
    f = parse_vllm_log(load("vllm024_tp2_source_derived.log"))
    assert f["engine_version"]["value"] == "0.24.0"
    assert "Initializing a V1 LLM engine" in f["engine_version"]["method"]
    assert span(f["weights_gib"]) == (2.86, 2.87, 2)  # "Model loading took X GiB memory and"
    assert f["weights_gib"]["value"] == 2.87  # memory: the fuller worker
    assert f["weight_load_s"]["value"] == 3.52  # time: the slower worker
    assert f["model_load_s"]["value"] == pytest.approx(4.203114)
    assert f["torch_compile_s"]["value"] == 21.37  # "torch.compile took"
    assert span(f["available_kv_cache_gib"]) == (58.12, 58.3, 2)
    assert f["kv_cache_tokens"]["value"] == 1_693_440
    assert f["max_concurrency"]["value"] == 51.68
    assert span(f["cuda_graph_capture_s"]) == (9, 10, 2)
    assert f["engine_init_s"]["value"] == 47.83  # "took 47.83 s (compilation: 21.37 s)"


def test_vllm_version_from_server_line_and_logo():
    assert parse_vllm_log("vLLM API server version 0.9.1\n")["engine_version"]["value"] == "0.9.1"
    line = "INFO 11-23 [api_utils.py:330] vLLM server version 0.24.0, serving model /m\n"
    assert parse_vllm_log(line)["engine_version"]["value"] == "0.24.0"
    logo = " \x1b[33m▄▄\x1b[0m \x1b[97m█ ▀▄▀ █\x1b[0m  version \x1b[97m0.24.0\x1b[0m\n"
    assert parse_vllm_log(logo)["engine_version"]["method"] == "log: vllm start-up logo"


def test_vllm_variants():
    f = parse_vllm_log(
        "INFO init engine (profile, create kv cache, warmup model) took 136.57 seconds\n"
        "INFO Explicitly set (4.0/62.73) GiB for KV cache on node 0.\n"
        "INFO GPU KV cache size: 49,152 tokens, Maximum concurrency for 4,096 tokens per "
        "request: 12.00x\n"
    )
    assert f["engine_init_s"]["value"] == 136.57
    assert "torch_compile_s" not in f
    assert f["available_kv_cache_gib"]["value"] == 4.0
    assert "cpu_worker" in f["available_kv_cache_gib"]["method"]
    assert f["kv_cache_tokens"]["value"] == 49_152
    assert (f["max_concurrency"]["value"], f["max_concurrency"]["tokens_per_request"]) == (12, 4096)
    # Compilation time is taken from the init line only when monitor.py printed nothing.
    g = parse_vllm_log(
        "init engine (profile, create kv cache, warmup model) took 70.62 s (compilation: 42.18 s)\n"
    )
    assert g["torch_compile_s"]["value"] == 42.18 and "core.py" in g["torch_compile_s"]["method"]


def test_sglang059_source_derived_tp2():
    f = parse_sglang_log(load("sglang059_tp2_source_derived.log"))
    assert span(f["kv_cache_tokens"]) == (1_043_214, 1_043_214, 2)
    assert f["max_total_num_tokens"]["value"] == 1_043_214
    assert f["max_running_requests"]["value"] == 4096
    assert f["kv_cache_gib"]["value"] == pytest.approx(57.30)
    assert span(f["weights_gib"]) == (3.38, 3.40, 2)
    assert f["weight_load_s"]["value"] == 4.37
    assert f["cuda_graph_capture_s"]["value"] == 12.91
    assert f["cuda_graph_gib"]["value"] == 0.63
    assert f["max_concurrency"]["value"] == pytest.approx(1_043_214 / 140_000)
    assert f["max_concurrency"]["tokens_per_request"] == 140_000
    assert f["max_concurrency"]["method"].startswith("derived")
    assert f["engine_init_s"]["value"] == 38.0  # 19:50:00 -> "fired up" at 19:50:38
    assert "engine_version" not in f  # SGLang prints none at start-up


def test_sglang_older_and_mla_formats():
    f = parse_sglang_log(
        "[2025-05-01 10:00:00.125 TP0] Load weight end. type=Qwen3ForCausalLM, "
        "dtype=torch.bfloat16, avail mem=62.10 GB, mem usage=16.03 GB.\n"
        "[2025-05-01 10:00:01.500 TP0] KV Cache is allocated. #tokens: 412345, KV size: 20.51 GB\n"
        "[2025-05-01 10:00:40.000 TP0] Capture cuda graph end. Time elapsed: 35.12 s\n"
        "[2025-05-01 10:00:41.000 TP0] Capture piecewise CUDA graph end. Time elapsed: 99.00 s. "
        "mem usage=9.00 GB. avail mem=1.00 GB.\n"
        "[2025-05-01 10:00:45.625] The server is fired up and ready to roll!\n"
    )
    assert f["weights_gib"]["value"] == 16.03
    assert "weight_load_s" not in f  # no "elapsed=" before ~0.4.7
    assert f["kv_cache_tokens"]["value"] == 412_345
    assert f["kv_cache_gib"]["value"] == 20.51
    assert f["cuda_graph_capture_s"]["value"] == 35.12  # the piecewise phase is not mixed in
    assert "cuda_graph_gib" not in f
    assert f["engine_init_s"]["value"] == pytest.approx(45.5)
    assert "max_concurrency" not in f  # no scheduler line: nothing to derive from


def test_sglang_falls_back_to_scheduler_tokens():
    f = parse_log(
        "SGLang",
        "[2025-05-01 10:00:00] max_total_num_tokens=98765, "
        "max_prefill_tokens=16384, max_running_requests=256, "
        "context_len=32768, available_gpu_mem=5.00 GB\n",
    )
    assert f["kv_cache_tokens"]["value"] == 98_765
    assert "scheduler" in f["kv_cache_tokens"]["method"]
    assert f["max_concurrency"]["value"] == pytest.approx(98_765 / 32_768)


def test_empty_and_unknown():
    assert parse_vllm_log("") == {"engine": "vllm"}
    assert parse_sglang_log("no facts here\n") == {"engine": "sglang"}
    with pytest.raises(ValueError, match="transformers"):
        parse_log("transformers", "")
