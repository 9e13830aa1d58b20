"""A new engine is one package, its environment and a config entry: the worked example of
docs/adding-an-engine.md, taken from that page, added to a copy of the workflow (nothing else in
it changes) and run through the DAG to the report on the tiny model."""

import filecmp
import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from test_e2e import ROOT, WORKFLOW_PARTS, copy_workflow, snakemake

from quantbench.config_check import check_schema
from quantbench.plan import ConfigError
from quantbench.status import Status

DOC = ROOT / "docs" / "adding-an-engine.md"
PACKAGE = "quantbench/engines/refserve/__init__.py"


def doc_files(doc=DOC) -> dict[str, str]:
    """The page's code blocks whose first line is `# file: <path>` (an "adding a ..." doc)."""
    blocks = re.findall(r"```\w*\n# file: (.+?)\n(.*?)```", doc.read_text(), flags=re.S)
    return dict(blocks)


def changed_files(work) -> set[str]:
    """Files of the workflow parts (and tools/, where copied) that differ from this
    repository's, or are new."""
    out = set()
    for part in [*WORKFLOW_PARTS, "tools"]:
        if not (work / part).exists():
            continue
        for path in (work / part).rglob("*") if (work / part).is_dir() else [work / part]:
            rel = path.relative_to(work)
            if path.is_dir() or "__pycache__" in rel.parts:
                continue
            if not (ROOT / rel).exists() or not filecmp.cmp(path, ROOT / rel, shallow=False):
                out.add(str(rel))
    return out


def test_a_new_engine_runs_to_the_report(tmp_path):
    files = doc_files()
    entry = yaml.safe_load(files.pop("config entry"))["engines"]
    assert set(files) == {PACKAGE}
    work = copy_workflow(tmp_path)
    shutil.copytree(ROOT / "tools", work / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    (work / PACKAGE).parent.mkdir()
    (work / PACKAGE).write_text(files[PACKAGE])
    # The page's step 2, in the copy: its env file is generated like the others.
    subprocess.run([sys.executable, "tools/gen_envs.py"], cwd=work, check=True)
    assert changed_files(work) == {PACKAGE, "envs/refserve.yaml"}

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["models"] = {"tiny-qwen3": {"source": "tiny", "seed": 0}}
    cfg["quantizations"] = {"bf16": {"method": "bf16"}}
    cfg["engines"] = entry
    cfg["sweep"] = {"models": "all", "quantizations": "all", "engines": "all"}
    cfg.pop("cells", None)
    cfg["benchmark"]["scenarios"] = ["single", "serving", "batch"]
    cfg["benchmark"]["single"].update(input_lengths=[8, 32], output_len=4, repeats=1, warmup=0)
    cfg["benchmark"]["serving"] = {"num_prompts": 4, "input_len": 16, "output_len": 4}
    cfg["benchmark"]["batch"] = {"batch_sizes": [2], "input_len": 16, "output_len": 4}
    cfg["evaluation"] = {"enabled": False}
    (work / "test.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--configfile", "test.yaml", timeout=600)

    cell = work / "results/bench/tiny-qwen3/bf16/refserve"
    single = json.loads((cell / "single.json").read_text())
    assert [r["status"] for r in single["rows"]] == [Status.OK, Status.OK], single
    assert all(r["cached_tokens"] == 0 for r in single["records"])  # reported, and none
    for name in ("serving", "batch"):
        doc = json.loads((cell / f"{name}.json").read_text())
        assert doc["status"] == Status.OK, doc
    launch = json.loads((work / "results/serve/tiny-qwen3/bf16/refserve/launch.json").read_text())
    assert launch["cmd"][1:3] == ["-m", "quantbench.refserver"]
    assert launch["prefix_cache"]["prefix_caching"] is False
    speed = pd.read_csv(work / "results/report/speed.csv")
    assert set(speed["engine"]) == {"refserve"}


def test_an_engine_key_is_checked_against_the_engines_settings():
    """A vLLM-only key under another engine is refused at parse time, naming what it takes."""
    config = {
        "models": {"m": {"source": "tiny"}},
        "quantizations": {"q": {"method": "bf16"}},
        "engines": {"sglang": {"gpu_memory_utilization": 0.9}},
    }
    with pytest.raises(ConfigError, match=r"engines\.sglang\.gpu_memory_utilization: unknown"):
        check_schema(config)
    config["engines"] = {"llamacpp": {"parallel": -1}}
    with pytest.raises(ConfigError, match=r"engines\.llamacpp\.parallel: -1 is out of range"):
        check_schema(config)


def test_every_declared_setting_reaches_the_engine():
    """A key the schema lets through is one the engine uses: a runner key, or a flag its
    launcher accepts (so no key passes the parse and fails at launch)."""
    from quantbench.engines import discover
    from quantbench.engines.llamacpp import KEYS as LLAMACPP_KEYS
    from quantbench.engines.served import RUNNER_KEYS
    from quantbench.engines.sglang.launch import SGLANG_KEYS
    from quantbench.engines.vllm.launch import VLLM_KEYS

    engines = discover()
    for name, keys in (("vllm", VLLM_KEYS), ("sglang", SGLANG_KEYS), ("llamacpp", LLAMACPP_KEYS)):
        declared = set(engines[name].settings)
        assert declared - RUNNER_KEYS <= keys, (name, declared - RUNNER_KEYS - keys)
