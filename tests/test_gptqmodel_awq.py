"""Issue 21: GPTQModel's own AWQ writes an AutoAWQ GEMM checkpoint (quant_method "awq") that the
Transformers engine, where GPTQModel is installed, keeps packed also after a forward pass: its
AWQ-INT4 memory is the format's, not BF16's. Tiny Qwen3 on CPU (~20 s). Runs only in an
environment with GPTQModel (envs/gptqmodel.yaml); skipped elsewhere (CI, the main .venv)."""

import json
from pathlib import Path

import pytest

from quantbench.engines.transformers import TransformersEngine
from quantbench.models import materialize
from quantbench.quant import run_quantization
from quantbench.quant.gptqmodel_method import GPTQModelMethod

pytest.importorskip("gptqmodel")

CALIBRATION = {"dataset": "data/corpus.txt", "num_samples": 8, "seq_len": 128, "seed": 0}
GIB = 2**30


@pytest.fixture(scope="module")
def awq(tmp_path_factory):
    root = tmp_path_factory.mktemp("gptqmodel-awq")
    tiny = materialize("tiny", {"source": "tiny", "seed": 0}, root / "tiny")
    method = GPTQModelMethod({"format": "awq", "bits": 4, "group_size": 128})
    return run_quantization(method, tiny, root / "awq", CALIBRATION, {}, fmt="awq")


def test_gptqmodel_awq_writes_autoawq_gemm(awq):
    assert awq["status"] == "ok" and awq["format"] == "awq"
    assert awq["scheme"] == "W4A16_ASYM AWQ" and awq["symmetric"] is False
    qc = json.loads((Path(awq["path"]) / "config.json").read_text())["quantization_config"]
    assert (qc["quant_method"], qc["version"], qc["bits"], qc["zero_point"]) == (
        "awq", "gemm", 4, True,
    )  # fmt: skip
    assert awq["compression_ratio"] > 1.5


def test_transformers_keeps_gptqmodel_awq_packed_after_a_forward(awq):
    engine = TransformersEngine({"device": "cpu", "dtype": "bfloat16", "weights": "packed"})
    engine.load(awq["path"], has_weights=True)  # `packed` fails a decompressed load
    facts = engine.startup_facts()
    size = {k: v["value"] * GIB for k, v in facts.items() if v["unit"] == "GiB"}
    assert engine.load_path == "packed" and facts["quant_method"]["value"] == "awq"
    assert size["weights_held_gib"] == pytest.approx(size["checkpoint_gib"], rel=0.02)
    assert size["weights_held_gib"] < 0.7 * size["dense_gib"]
    assert "AwqLinear" in facts["linear_classes"]["value"]
    record, mem = engine.generate(list(range(1, 9)), output_len=4)
    assert record.output_tokens == 4 and mem["weights_load_path"] == "packed"
