"""Engines are named instances: `engines: {<name>: {kind: <engine>, ...}}`. The name is the cell's
(paths, wildcards, tables); the kind decides what the engine is (its settings, formats and
kernels, environment). Two instances of one kind sit in one sweep as two cells."""

import copy
import json

import pandas as pd
import pytest
import yaml

from quantbench.config_check import check_config
from quantbench.plan import Cell, ConfigError, engine_kind
from tests.test_e2e import ROOT, copy_workflow, dry_run, snakemake


@pytest.fixture
def config():
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["models"] = {"tiny": {"source": "tiny", "seed": 0}}
    cfg["evaluation"] = {"enabled": False}
    return cfg


def two_transformers(cfg: dict) -> dict:
    cfg["engines"] = {
        "transformers": {"device": "cpu"},
        "hf-eager": {"kind": "transformers", "device": "cpu", "attn_implementation": "eager"},
    }
    return cfg


def test_two_instances_of_one_kind_plan_two_cells(config):
    cfg = two_transformers(config)
    cfg["quantizations"] = {"bf16": {"method": "bf16"}}
    cells, _ = check_config(cfg)
    assert cells == [Cell("tiny", "bf16", "transformers"), Cell("tiny", "bf16", "hf-eager")]
    # the kind is filled in (the default: the instance's name), the settings stay each one's
    assert cfg["engines"]["transformers"]["kind"] == "transformers"
    assert engine_kind(cfg, "hf-eager") == "transformers"
    assert cfg["engines"]["hf-eager"]["attn_implementation"] == "eager"
    assert cfg["engines"]["transformers"]["attn_implementation"] == "sdpa"  # its default


def test_snakemake_plans_each_instance_under_its_own_name(config, tmp_path):
    cfg = two_transformers(config)
    cfg["quantizations"] = {"bf16": {"method": "bf16"}}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = dry_run(path, tmp_path / "work")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("transformers", "hf-eager"):
        assert f"results/bench/tiny/bf16/{name}/single.json" in proc.stdout
        assert f"results/serve/tiny/bf16/{name}/launch.json" in proc.stdout


def test_a_key_of_another_kind_fails_at_parse_time_naming_it(config):
    config["engines"] = {"sglang-tp2": {"kind": "sglang", "gpu_memory_utilization": 0.9}}
    with pytest.raises(ConfigError) as err:
        check_config(config)
    msg = str(err.value)
    assert msg.startswith("engines.sglang-tp2.gpu_memory_utilization: unknown key")
    assert "kind sglang" in msg and "a setting of vllm" in msg


@pytest.mark.parametrize(
    "engines, expect",
    [
        ({"fast": {"kind": "vlm"}}, r"^engines\.fast\.kind: unknown engine kind 'vlm' \(did you"),
        ({"fast": {"device": "cpu"}}, r"^engines\.fast\.kind: missing, and 'fast' is not an"),
        ({"fast": {"kind": 3}}, r"^engines\.fast\.kind: unknown engine kind 3;"),
    ],
)
def test_an_unknown_kind_fails_naming_the_kind_key(config, engines, expect):
    config["engines"] = engines
    with pytest.raises(ConfigError, match=expect) as err:
        check_config(config)
    assert "transformers" in str(err.value) and "vllm" in str(err.value)  # the known kinds


def test_the_kind_decides_compatibility():
    """An instance plans exactly the quantizations its kind can load, whatever its name."""
    examples = yaml.safe_load((ROOT / "config" / "examples" / "quant_methods.yaml").read_text())

    def planned(engines: dict) -> dict[str, set]:
        cfg = {
            "models": {"m": {"source": "dummy", "arch": "Qwen3-0.6B"}},
            "quantizations": copy.deepcopy(examples["quantizations"]),
            "engines": engines,
            "sweep": {},
            "evaluation": {"enabled": False},
        }
        cells, _ = check_config(cfg)
        return {e: {c.quantization for c in cells if c.engine == e} for e in engines}

    by_kind = planned({"transformers": {}, "sglang": {}})
    by_name = planned({"hf-cpu": {"kind": "transformers"}, "fast": {"kind": "sglang"}})
    assert by_name == {"hf-cpu": by_kind["transformers"], "fast": by_kind["sglang"]}
    assert by_kind["transformers"] != by_kind["sglang"]  # the kinds differ, so the test can fail


def test_a_weightless_layout_runs_on_a_weightless_kind_under_any_name(config, monkeypatch):
    from quantbench.engines.transformers import TransformersEngine

    config["models"] = {"m": {"source": "dummy", "arch": "Qwen3-0.6B"}}
    config["quantizations"] = {"lay": {"method": "layout", "format": "awq"}}
    config["engines"] = {"long": {"kind": "sglang"}, "hf": {"kind": "transformers"}}
    cells, _ = check_config(config)
    assert sorted(cells) == sorted([Cell("m", "lay", "long"), Cell("m", "lay", "hf")])
    monkeypatch.setattr(TransformersEngine, "weightless_formats", ("fp8",))  # a kind that can't
    cells, skipped = check_config(config)
    assert cells == [Cell("m", "lay", "long")]
    assert any("'hf' (kind transformers)" in why for why in skipped)


def test_two_instances_run_to_the_report(tmp_path):
    """The real workflow on the tiny model: each instance's own results and report rows."""
    work = copy_workflow(tmp_path)
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg = two_transformers({**cfg, "models": {"tiny": {"source": "tiny", "seed": 0}}})
    cfg["quantizations"] = {"bf16": {"method": "bf16"}}
    single = {"input_lengths": [8], "output_len": 4, "repeats": 1, "warmup": 0}
    cfg["benchmark"] = {"single": single}
    cfg["evaluation"] = {"enabled": False}
    (work / "two.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--configfile", "two.yaml", timeout=900)
    for name in ("transformers", "hf-eager"):
        cell = work / f"results/bench/tiny/bf16/{name}"
        single = json.loads((cell / "single.json").read_text())
        assert [r["status"] for r in single["rows"]] == ["ok"], single
        facts = json.loads((cell / "engine.json").read_text())
        assert facts["provenance"]["engine"] == name
        assert facts["provenance"]["settings"]["engine"]["kind"] == "transformers"
    launch = json.loads((work / "results/serve/tiny/bf16/hf-eager/launch.json").read_text())
    assert launch["provenance"]["settings"]["attn_implementation"] == "eager"
    speed = pd.read_csv(work / "results/report/speed.csv")
    assert set(speed["engine"]) == {"transformers", "hf-eager"}
    # the GPU count each job ran with, as its provenance says: what the published tables key on
    requests = pd.read_csv(work / "results/report/requests.csv")
    assert set(requests["tensor_parallel_size"]) == {1}


def test_the_published_comparison_matches_an_instance_by_its_kind_and_gpus():
    """The Qwen3 grid's Qwen3-32B BF16 cell at 129024 tokens runs on `sglang-tp2`: it is
    compared with the published SGLang row (TP 2) and listed under its instance's name. The
    same cell on one GPU (the H200 holds it) has no published counterpart: no ratio against
    two GPUs, and its roofline is one GPU's."""
    from quantbench.published import comparison_table, published_comparison
    from quantbench.reference import load_qwen3_speed

    cells = pd.DataFrame(
        {
            "scenario": "single",
            "status": "ok",
            "engine": ["sglang", "sglang-tp2", "sglang"],
            "model": "Qwen3-32B",
            "quantization": "bf16",
            "input_len": [63488, 129024, 129024],
            "output_len": 2048,
            "speed_tok_s": [100.0, 200.0, 150.0],
            "decode_speed_tok_s": [20.0, 20.0, 20.0],
            "mem_method": "not measured",
            "device_name": "NVIDIA H100 80GB HBM3",
        }
    )
    config = {
        "models": {"Qwen3-32B": {}},
        "quantizations": {"bf16": {}},
        "engines": {
            "sglang": {"kind": "sglang"},
            "sglang-tp2": {"kind": "sglang", "tensor_parallel_size": 2},
        },
    }
    out = published_comparison(cells, config).set_index(["input_len", "tp"])
    pub = load_qwen3_speed().set_index(["engine", "model", "quant", "input_len"])
    row = pub.loc[("sglang", "Qwen3-32B", "bf16", 129024)]
    assert row["tp"] == 2
    assert out.loc[(129024, 2), "speed_tok_s_published"] == row["speed_tok_s"]
    assert out.loc[(129024, 2), "speed_tok_s_ratio"] == pytest.approx(200.0 / row["speed_tok_s"])
    one_gpu = out.loc[(129024, 1)]
    assert pd.isna(one_gpu["speed_tok_s_published"]) and pd.isna(one_gpu["speed_tok_s_ratio"])
    assert one_gpu["instance"] == "sglang"
    # One GPU's roofline: the two-GPU cell's bound is twice as high for the same decode rate.
    assert one_gpu["roofline_share"] == pytest.approx(2 * out.loc[(129024, 2), "roofline_share"])
    table = comparison_table(out.reset_index()).set_index("input_len")
    assert sorted(table["engine"]) == ["sglang", "sglang", "sglang-tp2"]


def test_an_instance_may_name_its_jobs_environment(config):
    """`conda_env` picks the env file of the instance's jobs (`--sdm conda`): Transformers
    with GPTQModel's kernels (envs/gptqmodel.yaml) beside the plain one. An unknown name fails
    at parse time naming the key; the engine itself never sees the key."""
    from quantbench.jobs import engine_of

    config["quantizations"] = {"bf16": {"method": "bf16"}}
    config["engines"] = {
        "transformers": {"device": "cpu"},
        "hf-gptq": {"kind": "transformers", "device": "cpu", "conda_env": "gptqmodel"},
    }
    cells, _ = check_config(copy.deepcopy(config))
    assert Cell("tiny", "bf16", "hf-gptq") in cells
    engine, kind = engine_of("hf-gptq", config["engines"]["hf-gptq"])
    assert kind == "transformers" and "conda_env" not in engine.settings

    config["engines"]["hf-gptq"]["conda_env"] = "gptq-model"
    with pytest.raises(ConfigError, match=r"^engines\.hf-gptq\.conda_env: .*gptqmodel"):
        check_config(config)
