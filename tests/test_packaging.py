"""Packaging: the wheel carries every data file and the console script, the workflow reaches the
installed package (no sys.path insert) and runs as a Snakemake `module` from another directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_sys_path_insert_in_the_workflow():
    files = [*(ROOT / "rules").glob("*.smk"), *(ROOT / "scripts").glob("*.py")]
    for path in [ROOT / "Snakefile", *files]:
        text = path.read_text()
        assert "sys.path.insert" not in text and "PYTHONPATH" not in text, path


def test_wheel_has_every_data_file(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
         str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("quantbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    share = "quantbench-0.1.0.data/data/share/quantbench/"
    expected = {f"quantbench/archs/{p.name}" for p in (ROOT / "quantbench/archs").glob("*.json")}
    expected |= {str(p.relative_to(ROOT)) for p in (ROOT / "quantbench").rglob("*.py")}
    expected |= {share + str(p.relative_to(ROOT)) for p in (ROOT / "data").glob("*.txt")}
    expected |= {share + str(p.relative_to(ROOT)) for p in (ROOT / "data/tasks").iterdir()}
    expected |= {share + str(p.relative_to(ROOT)) for p in (ROOT / "data/prompts").iterdir()}
    expected |= {share + "config/schema/config.schema.yaml", share + "reference/README.md"}
    assert len(expected) > 40 and not expected - names, sorted(expected - names)
    meta = zipfile.ZipFile(wheel).read("quantbench-0.1.0.dist-info/METADATA").decode()
    for extra in ("quantize", "eval", "vllm", "sglang", "gptqmodel", "gguf"):
        assert f"Provides-Extra: {extra}" in meta
    entry = zipfile.ZipFile(wheel).read("quantbench-0.1.0.dist-info/entry_points.txt").decode()
    assert "quantbench = quantbench.cli:main" in entry


def test_cli_lists_its_commands():
    out = subprocess.run([sys.executable, "-m", "quantbench.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for command in ("report", "compare", "index", "client"):
        assert command in out
    client = subprocess.run([sys.executable, "-m", "quantbench.cli", "client", "--help"],
                            capture_output=True, text=True, check=True).stdout
    assert "--base-url" in client


def test_workflow_runs_as_a_module(tmp_path):
    """A user's Snakefile elsewhere: `module` + `use rule *`, dry-run of the whole demo."""
    (tmp_path / "Snakefile").write_text(
        f'configfile: "{ROOT}/config/config.yaml"\n\n\n'
        f'module quantbench:\n    snakefile:\n        "{ROOT}/Snakefile"\n'
        "    config:\n        config\n\n\n"
        "use rule * from quantbench as qb_*\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-c1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rule in ("qb_model", "qb_quantize_llmcompressor", "qb_benchmark", "qb_evaluate",
                 "qb_aggregate"):
        assert rule in proc.stdout


def test_config_readme_documents_every_schema_key():
    sys.path.insert(0, str(ROOT / "tools"))
    import gen_config_readme as gen

    schema = gen.load_schema()
    readme = (ROOT / "config" / "README.md").read_text()
    missing = [key for key, _ in gen.walk(schema, schema) if f"| `{key}` |" not in readme]
    assert not missing, f"config/README.md lacks {missing}: run `make config-docs`"
    for path in (ROOT / "LICENSE", ROOT / ".snakemake-workflow-catalog.yml"):
        assert path.is_file(), path
