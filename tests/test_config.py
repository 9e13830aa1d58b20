"""Bad configs fail at parse time with a message naming the key and what is allowed."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from quantbench.engines.launch import build_launch
from quantbench.plan import Cell, ConfigError, cell_engine_settings, plan_cells
from quantbench.quant import QuantMethod, discover
from tests.schema_file import full_schema_file
from tests.test_e2e import dry_run

ROOT = Path(__file__).resolve().parent.parent
# The schema as the workflow checks it: the file plus each engine's declared settings.
SCHEMA = full_schema_file()


class AutoAWQ(QuantMethod):
    """An unregistered method writing a known format (awq), for the compatibility checks."""

    format = "awq"


# The registered quantization methods (quantbench/quant/), and that one.
RULES = {**discover(), "autoawq": AutoAWQ}


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def schema_error(cfg) -> str:
    with pytest.raises(WorkflowError) as err:
        validate(copy.deepcopy(cfg), schema=SCHEMA)
    return str(err.value)


def test_default_config_is_valid_and_plans_every_cell(config):
    validate(config, schema=SCHEMA)
    cells, skipped = plan_cells(config, RULES)
    assert len(cells) == len(config["models"]) * len(config["quantizations"])
    assert Cell("tiny-qwen3", "bf16", "transformers") in cells
    assert skipped == []


def test_schema_fills_defaults(config):
    del config["benchmark"]
    validate(config, schema=SCHEMA)
    assert config["benchmark"]["single"]["output_len"] == 2048
    assert config["benchmark"]["single"]["input_lengths"][-1] == 129024


def test_unknown_top_level_key_is_named(config):
    config["modles"] = {}
    assert "'modles' was unexpected" in schema_error(config)


def test_bad_enum_names_allowed_values(config):
    config["models"]["tiny-qwen3"]["source"] = "tiyn"
    msg = schema_error(config)
    assert "'tiyn' is not one of ['tiny', 'trained', 'hf', 'dummy']" in msg


def test_hf_model_needs_an_id(config):
    config["models"]["x"] = {"source": "hf"}
    assert "'id' is a required property" in schema_error(config)


def test_unknown_quant_method_suggests_the_close_one(config):
    config["quantizations"]["bf16"]["method"] = "llmcompresor"
    validate(config, schema=SCHEMA)
    with pytest.raises(
        ConfigError,
        match=r"quantizations\.bf16\.method.*'llmcompresor'.*"
        r"did you mean 'llmcompressor'",
    ):
        plan_cells(config, RULES)


def test_unknown_method_parameter(config):
    config["quantizations"]["fp8-dynamic"]["groupsize"] = 64
    validate(config, schema=SCHEMA)
    with pytest.raises(
        ConfigError, match=r"quantizations\.fp8-dynamic\.groupsize: not a key of method "
        r"'llmcompressor' \(did you mean 'group_size'\?\)"
    ):
        plan_cells(config, RULES)


def test_sweep_names_must_exist(config):
    config["sweep"]["quantizations"] = ["bf16", "fp8"]
    validate(config, schema=SCHEMA)
    with pytest.raises(ConfigError, match=r"sweep\.quantizations: unknown name 'fp8'.*allowed"):
        plan_cells(config, RULES)


def test_incompatible_cells_are_skipped_in_a_sweep_but_fail_when_explicit(config):
    config["quantizations"]["awq-gemm"] = {"method": "autoawq", "kernel": "awq_marlin"}
    validate(config, schema=SCHEMA)
    cells, skipped = plan_cells(config, RULES)
    assert all(c.quantization != "awq-gemm" for c in cells)
    assert any("awq_marlin" in why for why in skipped)
    config["cells"] = [
        {"model": "tiny-qwen3", "quantization": "awq-gemm", "engine": "transformers"}
    ]
    with pytest.raises(ConfigError, match=r"cells\[0\].*no kernel 'awq_marlin'.*\['awq'\]"):
        plan_cells(config, RULES)


def test_unknown_eval_task(config):
    config["evaluation"]["tasks"] = ["qb_mcq"]
    validate(config, schema=SCHEMA)
    with pytest.raises(ConfigError, match=r"evaluation\.tasks.*'qb_mcq'.*qb_mc"):
        plan_cells(config, RULES)


def test_snakemake_rejects_a_typo_before_any_job(tmp_path, config):
    config["quantizations"]["bf16"]["method"] = "bf61"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = dry_run(bad, tmp_path / "work")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "quantizations.bf16.method: unknown name 'bf61'" in out
    assert not (tmp_path / "work" / "results").exists()


def test_a_cell_can_run_only_scenarios_the_benchmark_defines(config):
    config["cells"] = [
        {
            "model": "tiny-qwen3",
            "quantization": "bf16",
            "engine": "transformers",
            "scenarios": ["singel"],
        }
    ]
    validate(config, schema=SCHEMA)
    with pytest.raises(ConfigError, match=r"cells\[0\]\.scenarios: \['singel'\] not in"):
        plan_cells(config, RULES)


def test_a_cell_adds_server_arguments_after_the_engines(config):
    engine = {"extra_args": ["--cuda-graph-max-bs-decode", "32"], "tensor_parallel_size": 1}
    cell = {
        "model": "tiny-qwen3",
        "quantization": "bf16",
        "engine": "sglang",
        "tensor_parallel_size": 2,
        "extra_args": ["--cuda-graph-backend-prefill", "disabled"],
    }
    config["cells"] = [cell]
    validate(config, schema=SCHEMA)
    settings = cell_engine_settings(engine, cell)
    spec = build_launch("sglang", "/m", "m", settings)
    assert spec.cmd[-4:] == [
        "--cuda-graph-max-bs-decode",
        "32",
        "--cuda-graph-backend-prefill",
        "disabled",
    ]
    assert spec.cmd[spec.cmd.index("--tp-size") + 1] == "2"
    assert engine == {"extra_args": ["--cuda-graph-max-bs-decode", "32"], "tensor_parallel_size": 1}
    assert cell_engine_settings(engine, {"model": "x"}) == engine


@pytest.mark.parametrize("name", ["served_gpu.yaml", "qwen3_speed.yaml"])
def test_the_gpu_examples_plan_without_error(name, tmp_path):
    # Read only on a GPU machine, where a typo costs device time: plan each here.
    proc = dry_run([ROOT / "config" / "examples" / name], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "benchmark" in proc.stdout
