"""Every quantization method that runs on CPU, on the tiny model: real quantizer output that
Transformers (or a GGUF reader) loads, whose weights are close to but not equal to BF16, and that
generates tokens. Methods that cannot run here are listed with the reason they are skipped.

Opt-in: QUANTBENCH_TEST_GGUF_BUILD=1 runs GGUF Q4_K_M, which builds llama-quantize from the
llama-cpp-python sdist once (~6 min on 2 cores; cached under QUANTBENCH_CACHE or
~/.cache/quantbench, and once built the test runs by itself). Q8_0 needs no build and always
runs.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from quantbench.models import materialize
from quantbench.quant import run_quantization
from quantbench.quant.gguf_method import GGUF, LLAMA_CPP_PYTHON, cache_dir
from quantbench.quant.llmcompressor_method import LLMCompressor
from quantbench.quant.prequantized import Prequantized
from quantbench.status import Status

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = {"dataset": "data/corpus.txt", "num_samples": 8, "seq_len": 128, "seed": 0}
PROBE = "model.layers.1.mlp.down_proj.weight"
# Q4_K_M runs when asked to, or when llama-quantize is already there (given, or built earlier).
GGUF_BUILD = (
    os.environ.get("QUANTBENCH_TEST_GGUF_BUILD") == "1"
    or bool(os.environ.get("QUANTBENCH_LLAMA_QUANTIZE") or shutil.which("llama-quantize"))
    or (cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON}/build-quantbench/bin/llama-quantize").exists()
)

# (name, method class, params, checkpoint format, bound on the probe weight's relative error)
CPU_METHODS = [
    ("fp8-dynamic", LLMCompressor, {"scheme": "FP8_DYNAMIC"}, "compressed-tensors", 0.06),
    ("fp8-block", LLMCompressor, {"scheme": "FP8_BLOCK"}, "compressed-tensors", 0.06),
    ("w8a16-gptq", LLMCompressor, {"scheme": "W8A16", "algorithm": "gptq"}, "compressed-tensors",
     0.02),
    ("w4a16-gptq", LLMCompressor, {"scheme": "W4A16", "algorithm": "gptq"}, "compressed-tensors",
     0.25),
    ("w4a16-awq", LLMCompressor, {"scheme": "W4A16_ASYM", "algorithm": "awq"},
     "compressed-tensors", 0.25),
    ("gguf-q8_0", GGUF, {"type": "Q8_0", "fallback_pre_tokenizer": "gpt-2"}, "gguf", 0.02),
    pytest.param(
        "gguf-q4_k_m", GGUF, {"type": "Q4_K_M", "fallback_pre_tokenizer": "gpt-2"}, "gguf", 0.25,
        marks=pytest.mark.skipif(
            not GGUF_BUILD,
            reason="builds llama-quantize (~6 min on 2 cores): set QUANTBENCH_TEST_GGUF_BUILD=1",
        ),
    ),
]  # fmt: skip
NOT_HERE = {
    "gptqmodel": "GPTQModel needs its own environment (envs/gptqmodel.yaml: transformers 5.23)"
    if importlib.util.find_spec("gptqmodel") is None
    else None,
    "autoawq": "AutoAWQ is deprecated upstream and its quantizer needs CUDA kernels; AWQ runs "
    "through llmcompressor (algorithm: awq) or gptqmodel (format: awq) instead",
    "prequantized-hub": "the Hugging Face Hub is unreachable here (a local directory is tested)",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return materialize("tiny", {"source": "tiny", "seed": 0}, tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def reference(tiny):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny["path"], dtype=torch.bfloat16)


def load_checkpoint(manifest: dict, decompress: bool = False):
    """As the Transformers engine loads it; `decompress` turns compressed-tensors weights into
    plain BF16 tensors (by default they stay packed and are decompressed inside forward)."""
    from transformers import AutoConfig, AutoModelForCausalLM, CompressedTensorsConfig

    path = manifest["path"]
    if decompress and manifest["format"] == "compressed-tensors":
        return AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch.bfloat16,
            quantization_config=CompressedTensorsConfig(run_compressed=False),
        )
    if manifest["format"] == "gguf":
        # config.json beside the GGUF: Transformers' qwen3 GGUF reader assumes head_dim 128.
        return AutoModelForCausalLM.from_pretrained(
            path,
            gguf_file=manifest["gguf_file"],
            config=AutoConfig.from_pretrained(path),
            dtype=torch.bfloat16,
        )
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)


def quantize(tiny, tmp_path, name, cls, params, fmt):
    return run_quantization(cls(params), tiny, tmp_path / name, CALIBRATION, {}, fmt=fmt)


@pytest.mark.parametrize("name, cls, params, fmt, max_err", CPU_METHODS)
def test_method_writes_a_loadable_quantized_checkpoint(
    tiny, reference, tmp_path, name, cls, params, fmt, max_err
):
    from transformers import AutoTokenizer

    manifest = quantize(tiny, tmp_path, name, cls, params, fmt)
    on_disk = json.loads((tmp_path / name / "quant.json").read_text())
    assert on_disk["status"] == Status.OK and on_disk["format"] == fmt
    for key in ("scheme", "weight_bits", "size_bytes", "bf16_size_bytes", "quantize_seconds"):
        assert on_disk[key] is not None, key
    assert on_disk["compression_ratio"] > 1.05, "no smaller than BF16: nothing was quantized"
    data_dependent = params.get("algorithm") in ("gptq", "awq")
    assert (on_disk["calibration"] is not None) == data_dependent
    if fmt == "compressed-tensors":
        qc = json.loads((tmp_path / name / "checkpoint" / "config.json").read_text())
        assert qc["quantization_config"]["quant_method"] == "compressed-tensors"

    # The dequantized weights are close to BF16, but not equal to it.
    original = reference.get_parameter(PROBE).float()
    loaded = load_checkpoint(manifest, decompress=True).get_parameter(PROBE).float()
    err = ((loaded - original).norm() / original.norm()).item()
    assert 0 < err < max_err, f"relative error {err:.4f} of {PROBE}"

    model = load_checkpoint(manifest)
    tokenizer = AutoTokenizer.from_pretrained(manifest["path"])
    ids = tokenizer("def main():", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4


PIN_PROBE = """
import torch
from llmcompressor.pipelines.cache import IntermediatesCache
from quantbench.quant.llmcompressor_method import _patch_cpu_only_pin_memory
cache = IntermediatesCache.from_dataloader([{"x": torch.ones(2)}])
try:
    cache.pin_memory(0)  # what AWQ calls before each smoothing search
    print("unpatched: ok")
except RuntimeError as err:
    print("unpatched:", err)
_patch_cpu_only_pin_memory()
cache.pin_memory(0)
print("patched: ok", cache.fetch(0)["x"].is_pinned())
"""


def test_pin_memory_patch_is_what_lets_awq_run_on_a_cpu_only_machine():
    if torch.accelerator.is_available():
        pytest.skip("an accelerator is present: pinning works and is left alone")
    # A fresh interpreter: the AWQ test above has already patched this one.
    out = subprocess.run(
        [sys.executable, "-c", PIN_PROBE], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert "unpatched: Cannot access accelerator device" in out
    assert "patched: ok False" in out


def test_prequantized_local_checkpoint_is_used_in_place_and_verified(tiny, tmp_path):
    fp8 = quantize(tiny, tmp_path, "src", LLMCompressor, {"scheme": "FP8_DYNAMIC"}, "c-t")
    ckpt = fp8["path"]
    good = quantize(
        tiny, tmp_path, "pq", Prequantized, {"id": ckpt, "format": "compressed-tensors"}, "c-t"
    )
    assert good["path"] == ckpt and not (tmp_path / "pq" / "checkpoint").exists()
    assert good["weight_bits"] == 8 and good["compression_ratio"] > 1.05
    with pytest.raises(RuntimeError, match=r"quant_method 'compressed-tensors'.*declares.*'awq'"):
        quantize(tiny, tmp_path, "pq2", Prequantized, {"id": ckpt, "format": "awq"}, "awq")


def test_prequantized_hub_id_offline_fails_with_how_to(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        RuntimeError, match=r"(?s)Qwen/Qwen3-8B-AWQ.*HF_HUB_OFFLINE=1.*local directory"
    ):
        quantize(
            tiny,
            tmp_path,
            "hub",
            Prequantized,
            {"id": "Qwen/Qwen3-8B-AWQ", "format": "awq"},
            "awq",
        )


@pytest.mark.parametrize("name", [n for n, why in NOT_HERE.items() if why])
def test_methods_that_cannot_run_here(name):
    pytest.skip(NOT_HERE[name])


def test_hub_calibration_dataset_unreachable_says_what_to_do(tiny, monkeypatch):
    from transformers import AutoTokenizer

    from quantbench.quant.calibration import CalibrationError, calibration_token_ids

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(tiny["path"])
    with pytest.raises(CalibrationError, match=r"(?s)hf:no-such/dataset.*data/corpus\.txt"):
        calibration_token_ids(tokenizer, {**CALIBRATION, "dataset": "hf:no-such/dataset"})
