"""Quantization entries are checked when the workflow is parsed: method keys, a prequantized
checkpoint's declared format, and which engine/kernel loads each method's format."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from quantbench.compat import COMPAT, FORMATS
from quantbench.plan import Cell, ConfigError, plan_cells
from quantbench.quant import discover
from tests.schema_file import full_schema_file
from tests.test_e2e import dry_run

ROOT = Path(__file__).resolve().parent.parent
# The schema as the workflow checks it: the file plus each engine's declared settings.
SCHEMA = full_schema_file()
EXAMPLE = ROOT / "config" / "examples" / "quant_methods.yaml"
# What the quantization methods declare (quantbench/quant/).
RULES = discover()


@pytest.fixture
def config():
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["engines"] = {"transformers": {}, "vllm": {}}
    return cfg


def test_every_declared_format_is_in_the_compat_table():
    declared = {r.format for r in RULES.values() if r.format}
    for r in RULES.values():  # a method whose entries state their format: each one it allows
        declared |= set(r.settings.get("format", {}).get("enum", []))
    assert declared == set(FORMATS)
    # Every format is loadable by the in-process engine.
    for fmt in FORMATS:
        assert (fmt, "transformers") in COMPAT


def test_prequantized_format_is_required_and_validated(config):
    bad = copy.deepcopy(config)
    del bad["quantizations"]["qwen3-8b-awq"]["format"]
    with pytest.raises(WorkflowError, match="'format' is a required property"):
        validate(bad, schema=SCHEMA)
    bad = copy.deepcopy(config)
    bad["quantizations"]["qwen3-8b-awq"]["format"] = "exl2"
    with pytest.raises(WorkflowError, match="'exl2' is not one of"):
        validate(bad, schema=SCHEMA)


def test_kernel_is_an_axis_checked_against_the_declared_format(config):
    validate(config, schema=SCHEMA)
    cells, skipped = plan_cells(config, RULES)
    # awq_marlin is a vLLM kernel, not a Transformers one; awq runs on both.
    assert Cell("qwen3-8b", "qwen3-8b-awq", "transformers") in cells
    config["cells"] = [
        {"model": "qwen3-8b", "quantization": "qwen3-8b-awq-marlin", "engine": "vllm"}
    ]
    cells, skipped = plan_cells(config, RULES)
    assert Cell("qwen3-8b", "qwen3-8b-awq-marlin", "vllm") in cells
    config["cells"] = [
        {"model": "qwen3-8b", "quantization": "qwen3-8b-awq-marlin", "engine": "transformers"}
    ]
    with pytest.raises(ValueError, match=r"no kernel 'awq_marlin' for format 'awq'.*\['awq'\]"):
        plan_cells(config, RULES)


def test_format_is_a_key_only_prequantized_takes(config):
    config["quantizations"]["fp8-dynamic"]["format"] = "fp8"
    with pytest.raises(ConfigError, match=r"quantizations\.fp8-dynamic\.format: not a key of"):
        plan_cells(config, RULES)


def test_the_example_config_plans_every_method(tmp_path):
    proc = dry_run(EXAMPLE, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rule in ("llmcompressor", "gguf", "gptqmodel", "prequantized"):
        assert f"quantize_{rule}" in proc.stdout


def test_a_weightless_layout_runs_only_on_dummy_models_with_engines_that_fill_it(
    config, monkeypatch
):
    config["quantizations"]["awq-layout"] = {
        "method": "layout",
        "format": "awq",
        "kernel": "awq_marlin",
    }
    config["sweep"]["quantizations"].append("awq-layout")
    cells, skipped = plan_cells(config, RULES)
    assert not [c for c in cells if c.quantization == "awq-layout"]  # tiny-qwen3 has weights
    assert any("weightless layout" in why and "tiny-qwen3" in why for why in skipped)
    config["cells"] = [{"model": "qwen3-8b", "quantization": "awq-layout", "engine": "vllm"}]
    assert Cell("qwen3-8b", "awq-layout", "vllm") in plan_cells(config, RULES)[0]
    config["cells"][0]["engine"] = "transformers"  # fills it through GPTQModel's kernels
    del config["quantizations"]["awq-layout"]["kernel"]
    assert Cell("qwen3-8b", "awq-layout", "transformers") in plan_cells(config, RULES)[0]
    from quantbench.engines.transformers import TransformersEngine

    monkeypatch.setattr(TransformersEngine, "weightless_formats", ("fp8",))
    with pytest.raises(
        ValueError, match=r"cells\[0\]: engine 'transformers' fills only the \['fp8'\]"
    ):
        plan_cells(config, RULES)
    config["quantizations"]["fp8-layout"] = {"method": "layout", "format": "fp8"}
    config["cells"] = [
        {"model": "qwen3-8b", "quantization": "fp8-layout", "engine": "transformers"}
    ]
    assert Cell("qwen3-8b", "fp8-layout", "transformers") in plan_cells(config, RULES)[0]


@pytest.mark.parametrize(
    "fmt,bits,block", [("awq", 4, None), ("fp8", 8, "128x128"), ("gptq", 8, None)]
)
def test_layout_writes_the_published_quantization_config_and_no_weights(tmp_path, fmt, bits, block):
    import json

    from quantbench.archs import load_arch
    from quantbench.quant import has_weight_files
    from quantbench.quant.layout import Layout

    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(load_arch("Qwen3-8B")))
    facts = Layout({"format": fmt, "bits": bits}).quantize(src, tmp_path / "out", {})
    qc = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == fmt and qc.get("bits", 8) == bits == facts["weight_bits"]
    assert qc.get("weight_block_size") == ([128, 128] if block else None)
    assert facts["group_size"] == (block or 128)
    assert not has_weight_files(tmp_path / "out") and facts["weightless"]
    (src / "model.safetensors").write_bytes(b"x")  # a model with weights: quantize it for real
    with pytest.raises(ValueError, match="for dummy models"):
        Layout({"format": fmt}).quantize(src, tmp_path / "again", {})


def test_a_methods_format_rows_join_the_engines_and_must_agree(monkeypatch):
    from quantbench import compat, quant

    class NewFormat(quant.QuantMethod):
        format = "exl2"
        compat = {"exl2": {"vllm": ("exl2_kernel",)}}

    monkeypatch.setitem(quant.QUANT_METHODS, "exl2", NewFormat)
    rows = compat.merged_rows()
    assert rows[("exl2", "vllm")] == ["exl2_kernel"]
    assert rows[("awq", "vllm")] == COMPAT[("awq", "vllm")]  # the engines' rows stay

    class Clash(quant.QuantMethod):
        compat = {"awq": {"vllm": ("awq",)}}  # vLLM declares awq_marlin first

    monkeypatch.setitem(quant.QUANT_METHODS, "clash", Clash)
    with pytest.raises(ValueError, match=r"\('awq', 'vllm'\) is declared by engine 'vllm'"):
        compat.merged_rows()


def test_a_format_without_rows_is_refused_naming_where_to_declare_them(config):
    from quantbench.quant import QuantMethod

    class NoRows(QuantMethod):
        format = "exl2"

    config["quantizations"]["exl2-q"] = {"method": "exl2"}
    with pytest.raises(
        ConfigError,
        match=r"quantizations\.exl2-q: no engine loads checkpoint format 'exl2' \(method "
        r"'exl2'\): declare its compat rows as `compat` on the quantization method's class "
        r"\(quantbench/quant/<module>\.py\)",
    ):
        plan_cells(config, {**RULES, "exl2": NoRows})


def gptqmodel_config(**awq) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["models"] = {"tiny": {"source": "tiny", "seed": 0}}
    cfg["evaluation"] = {"enabled": False}
    cfg["engines"] = {"transformers": {"device": "cpu"}, "vllm": {}}
    cfg["quantizations"] = {
        "gq": {"method": "gptqmodel"},
        "awq-gq": {"method": "gptqmodel", "format": "awq", **awq},
    }
    return cfg


def test_gptqmodel_format_awq_is_the_awq_format_for_compat_and_plan():
    """Issue 21: GPTQModel also writes AWQ checkpoints (`format: awq`); the entry's format is
    what the compat table and the plan read, so engines that load `awq` take them."""
    from quantbench.config_check import check_config
    from quantbench.plan import quant_format

    cfg = gptqmodel_config(kernel="awq_marlin")
    cfg["sweep"] = {"engines": ["vllm"]}
    cells, _ = check_config(cfg)
    assert Cell("tiny", "awq-gq", "vllm") in cells and Cell("tiny", "gq", "vllm") in cells
    # The default stays gptq (filled in at parse time); `sym` has no schema default: GPTQ is
    # symmetric, AWQ's GEMM layout stores zero points.
    assert cfg["quantizations"]["gq"]["format"] == "gptq"
    assert "sym" not in cfg["quantizations"]["awq-gq"]
    assert quant_format(cfg, "gq", RULES) == "gptq"
    assert quant_format(cfg, "awq-gq", RULES) == "awq"
    assert RULES["gptqmodel"].format == "gptq"
    assert COMPAT[("awq", "transformers")] == ["awq"]


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({"format": "exl2"}, r"^quantizations\.awq-gq\.format: 'exl2' is not allowed.*'awq'"),
        ({"bits": 8}, r"^quantizations\.awq-gq\.bits: 8 is not allowed; allowed: \[4\]"),
        ({"desc_act": True}, r"^quantizations\.awq-gq\.desc_act: true is not allowed"),
        ({"fromat": "awq"}, r"quantizations\.awq-gq\.fromat.*did you mean 'format'"),
    ],
)
def test_gptqmodel_format_is_checked_at_parse_time_naming_the_key(entry, error):
    from quantbench.config_check import check_config

    cfg = gptqmodel_config()
    cfg["quantizations"]["awq-gq"].update(entry)
    with pytest.raises(ConfigError, match=error):
        check_config(cfg)


def test_qwen3_speed_runs_its_transformers_awq_cells_packed_on_gptqmodel():
    """The published table's Transformers AWQ-INT4 cells use the AWQ-format checkpoint on the
    GPTQModel instance (compressed-tensors W4A16_ASYM decompresses there); SGLang's keep theirs."""
    from quantbench.config_check import check_config
    from quantbench.plan import quant_format

    cfg = yaml.safe_load((ROOT / "config" / "examples" / "qwen3_speed.yaml").read_text())
    cells, _ = check_config(cfg)
    awq = {
        (c.quantization, c.engine)
        for c in cells
        if cfg["quantizations"][c.quantization].get("reference_quant") == "AWQ-INT4"
    }
    assert {e for q, e in awq if e.startswith("transformers")} == {"transformers-gptq"}
    assert ("awq-gptqmodel", "transformers-gptq") in awq and ("awq-int4", "sglang") in awq
    assert quant_format(cfg, "awq-gptqmodel", RULES) == "awq"
