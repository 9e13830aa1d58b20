"""The bad-config corpus (tests/data/bad_configs/*.yaml): each file is refused at parse time by
the checks the workflow runs (quantbench.config_check.check_config, called from
rules/common.smk), with a message of a few lines that names the key and the fix or the allowed
values. The files under runtime/ hold what only the compute node can tell: they must pass the
parse-time checks (their failure is recorded at run time). A few files also go through a real
`snakemake -n`, to show the Snakefile runs the same checks.

Each corpus file starts with comment lines: `# expect: <text naming the key>`, `# fix: <text of
the fix or allowed values>`, optionally `# gpus: N` (as `--resources gpu=N`)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from quantbench.config_check import check_config, load_config_file, merge_configs
from quantbench.plan import ConfigError
from quantbench.quant import discover

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "bad_configs"
BAD = sorted(CORPUS.glob("*.yaml"))
RUNTIME = sorted((CORPUS / "runtime").glob("*.yaml"))
MAX_LINES = 5
MAX_CHARS = 600


def header(path: Path) -> dict:
    meta = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].strip().partition(": ")
        if key in ("expect", "fix", "gpus", "runtime"):
            meta[key] = int(value) if key == "gpus" else value
    return meta


@pytest.fixture(scope="module")
def rules():
    return discover()


def refusal(path: Path, rules) -> str:
    meta = header(path)
    with pytest.raises(ConfigError) as err:
        config = load_config_file(path)
        check_config(config, [path], rules, gpus=meta.get("gpus"))
    return str(err.value)


def test_the_corpus_has_at_least_70_bad_configs():
    assert len(BAD) >= 70
    for path in BAD:
        meta = header(path)
        assert meta.get("expect") and meta.get("fix"), f"{path.name}: no expect/fix header"


def test_the_quant_methods_are_declared_by_their_classes(rules):
    assert {"bf16", "llmcompressor", "gguf", "gptqmodel", "prequantized", "layout"} <= set(rules)
    llmc = set(rules["llmcompressor"].settings)
    assert llmc == {"scheme", "algorithm", "ignore", "bits", "group_size"}
    assert rules["layout"].weightless and rules["prequantized"].format is None


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_a_bad_config_is_refused_naming_the_key_and_the_fix(path, rules, monkeypatch):
    monkeypatch.chdir(ROOT)  # relative paths in the corpus are the repository's
    meta = header(path)
    msg = refusal(path, rules)
    assert meta["expect"] in msg, msg
    assert meta["fix"] in msg, msg
    assert len(msg.splitlines()) <= MAX_LINES and len(msg) <= MAX_CHARS, msg


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: p.stem)
def test_what_only_the_compute_node_knows_is_not_refused_at_parse_time(path, rules, monkeypatch):
    monkeypatch.chdir(ROOT)
    meta = header(path)
    assert meta.get("runtime"), f"{path.name}: no runtime header"
    cells, _ = check_config(load_config_file(path), [path], rules, gpus=meta.get("gpus"))
    assert cells


def test_a_yaml_error_names_the_file_line_and_column(rules):
    for path in CORPUS.glob("yaml_*.yaml"):
        msg = refusal(path, rules)
        if "syntax" in msg:
            assert re.search(rf"{re.escape(str(path))}:\d+:\d+: YAML syntax error", msg), msg


def test_a_duplicate_key_names_both_lines(rules):
    msg = refusal(CORPUS / "dup_model_name.yaml", rules)
    assert re.search(r"dup_model_name\.yaml:(\d+): duplicate key 'm' \(first at line (\d+)", msg)


def test_an_anchor_merge_may_override_what_it_merges(tmp_path):
    """`<<: *anchor` then a key of the anchor again is YAML's override, not a duplicate; a key
    written twice in the mapping itself still is."""
    text = (
        "engines:\n  sglang: &base {device: cuda, context_length: 40960}\n"
        "  sglang-long:\n    <<: *base\n    kind: sglang\n    context_length: 140000\n"
    )
    path = tmp_path / "anchor.yaml"
    path.write_text(text)
    long = load_config_file(path)["engines"]["sglang-long"]
    assert long == {"device": "cuda", "context_length": 140000, "kind": "sglang"}
    path.write_text(text + "    context_length: 1024\n")
    with pytest.raises(ConfigError, match=r"anchor\.yaml:7: duplicate key 'context_length'"):
        load_config_file(path)


def shipped_path(name: str) -> Path:
    """The default config and the examples."""
    for folder in ("config", "config/examples"):
        if (ROOT / folder / name).exists():
            return ROOT / folder / name
    raise FileNotFoundError(name)


SHIPPED = [
    [p.name] for p in [ROOT / "config/config.yaml", *sorted(ROOT.glob("config/examples/*.yaml"))]
]


@pytest.mark.parametrize("files", SHIPPED, ids=lambda f: "+".join(x[:-5] for x in f))
def test_the_shipped_configs_pass(files, rules, monkeypatch):
    monkeypatch.chdir(ROOT)
    paths = [shipped_path(f) for f in files]
    config = merge_configs(load_config_file(p) for p in paths)
    cells, _ = check_config(config, paths, rules)
    assert cells
    if files != ["qwen3_speed.yaml"]:  # one GPU per job: what profiles/local gives
        check_config(config, paths, rules, gpus=1)


def test_the_published_grid_needs_two_gpus_per_job(rules, monkeypatch):
    # Its Qwen3-32B cell on the sglang-tp2 instance: refused under profiles/local (gpu=1), fine
    # under Slurm.
    monkeypatch.chdir(ROOT)
    path = shipped_path("qwen3_speed.yaml")
    with pytest.raises(ConfigError, match=r"engines\.sglang-tp2\.tensor_parallel_size: 2 GPUs"):
        check_config(load_config_file(path), [path], rules, gpus=1)


def snakemake_n(configfile: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-n", "-c1", "--configfile", str(configfile)]
    cmd += ["-s", str(ROOT / "Snakefile"), "-d", str(workdir), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "name",
    [
        "typo_vllm_max_model_len",  # checked before the rules read the config
        "dup_top_level_key",  # re-read from workflow.configfiles
        "dummy_unknown_arch",  # checked in plan()
        "unregistered_method",  # the quantization method registry, in plan()
        "dup_cell_different",
        "tp_beyond_gpus_engine",  # --resources gpu=1, read from workflow.global_resources
    ],
)
def test_snakemake_runs_the_same_checks(name, tmp_path):
    path = CORPUS / f"{name}.yaml"
    meta = header(path)
    extra = ["--resources", f"gpu={meta['gpus']}"] if "gpus" in meta else []
    proc = snakemake_n(path, tmp_path / "work", *extra)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config error: " in out and meta["expect"] in out and meta["fix"] in out, out
    # Snakemake's frame: "WorkflowError in file ...", the message, two "File" lines.
    error = out[out.index("WorkflowError") :].strip().splitlines()
    assert len(error) <= MAX_LINES, out
    assert not (tmp_path / "work" / "results").exists()


def test_snakemake_stops_at_a_yaml_error_before_the_workflow(tmp_path):
    # Snakemake loads --configfile itself, before the Snakefile: its message names neither file
    # nor line; --verbose prints PyYAML's (docs/configuration.md, "Validation").
    path = CORPUS / "yaml_unclosed_brace.yaml"
    proc = snakemake_n(path, tmp_path / "work", "--verbose")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "not valid JSON or YAML" in out
    assert re.search(r'in ".*yaml_unclosed_brace\.yaml", line \d+, column \d+', out)
    assert not (tmp_path / "work" / "results").exists()
