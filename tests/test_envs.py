"""The rules' environments are right by construction: envs/*.yaml are generated from
pyproject.toml's extras (tools/gen_envs.py) and must be current, and each rule's env file covers
every third-party module its script can import (a static closure over the quantbench modules it
reaches). A full venv build per env file is too slow for CI on 2 cores; docs/packaging.md says
which real installs were checked."""

from __future__ import annotations

import ast
import importlib.metadata as md
import inspect
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from quantbench.engines import discover
from quantbench.quant import discover as quant_methods

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

STDLIB = set(sys.stdlib_module_names) | {"__future__"}
# Modules whose distribution is named otherwise.
MODULE_DIST = {
    "yaml": "pyyaml",
    "lm_eval": "lm-eval",
    "pynvml": "nvidia-ml-py",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "google": "protobuf",
}
# What the engines' packages bring that this environment cannot install to read from metadata.
PROVIDES = {
    "vllm": {"torch", "transformers", "tokenizers", "numpy", "aiohttp", "huggingface-hub",
             "nvidia-ml-py", "pyyaml", "tqdm", "compressed-tensors", "safetensors", "psutil"},
    "sglang": {"torch", "transformers", "tokenizers", "numpy", "aiohttp", "huggingface-hub",
               "nvidia-ml-py", "pyyaml", "tqdm", "compressed-tensors", "safetensors", "psutil",
               "uvloop"},
    "gptqmodel": {"transformers", "tokenizers", "huggingface-hub", "safetensors", "numpy",
                  "accelerate", "datasets", "psutil"},
}
# Modules the code imports only behind `try: ... except ImportError` are found by the walk
# below; these are imported unguarded but only on paths an environment never takes.
NOT_NEEDED = {
    # GGUF's converter runs from the llama.cpp tree the job downloads (gguf_method.py)
    "convert_hf_to_gguf",
    "conversion",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _requires(dist: str) -> frozenset[str]:
    """A distribution and everything it requires (unconditional requirements), transitively,
    from the installed metadata; unknown distributions contribute themselves."""
    seen, todo = set(), [_norm(dist)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        seen |= PROVIDES.get(name, set())
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in reqs:
            if "extra ==" in req:
                continue
            todo.append(_norm(re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0]))
    return frozenset(seen)


def env_dists(env_file: Path) -> set[str]:
    doc = yaml.safe_load(env_file.read_text())
    pip = next(d["pip"] for d in doc["dependencies"] if isinstance(d, dict))
    out: set[str] = {"snakemake"}  # the driver's, on every script's search path
    for req in pip:
        out |= _requires(re.split(r"[\s\[<>=!~;@]", req, maxsplit=1)[0])
    return out


@cache
def _packages_distributions() -> dict:
    return md.packages_distributions()


def module_dist(module: str) -> str:
    if module in MODULE_DIST:
        return MODULE_DIST[module]
    dists = _packages_distributions().get(module)
    return _norm(dists[0]) if dists else _norm(module)


def _guarded(tree: ast.AST) -> set[int]:
    """ids of import nodes inside `try:` blocks that catch ImportError (optional imports)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            names = {
                ast.unparse(h.type) for h in node.handlers if h.type is not None
            }
            if any(n in s for s in names for n in ("ImportError", "ModuleNotFoundError")):
                out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def _imports(tree: ast.AST) -> list[str]:
    guarded = _guarded(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
            if node.module == "quantbench" or node.module.startswith("quantbench."):
                out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def _entry_trees(script: Path) -> list[ast.AST]:
    """A script's import statements, and for `from quantbench.jobs import X` only X's body
    (jobs.py holds every rule's entry point; each imports its stage's modules lazily)."""
    tree = ast.parse(script.read_text())
    trees: list[ast.AST] = [tree]
    jobs = ast.parse((ROOT / "quantbench/jobs.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "quantbench.jobs":
            names = {a.name for a in node.names}
            trees += [f for f in jobs.body if getattr(f, "name", None) in names]
            trees += [n for n in jobs.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return trees


def third_party_imports(script: Path) -> dict[str, str]:
    """Top-level third-party module -> the quantbench module that imports it."""
    found: dict[str, str] = {}
    todo = [(t, script.name) for t in _entry_trees(script)]
    seen: set[str] = {"quantbench.jobs"}
    while todo:
        tree, where = todo.pop()
        for name in _imports(tree):
            top = name.split(".")[0]
            if top == "quantbench":
                # the package and each parent package along the way
                parts = name.split(".")
                for i in range(1, len(parts) + 1):
                    mod = ".".join(parts[:i])
                    path = _module_file(mod)
                    if path and mod not in seen:
                        seen.add(mod)
                        todo.append((ast.parse(path.read_text()), mod))
            elif top not in STDLIB and top not in NOT_NEEDED:
                found.setdefault(top, where)
    return found


RULE = re.compile(r"^rule (\w+):", re.M)
# The quantization methods: each one's quantize job runs in the environment it declares.
QUANT_METHODS = [cls for _, cls in sorted(quant_methods().items())]
# Every engine package's environment, transformers (the in-process engine) first.
ENGINE_ENVS = ["transformers", *sorted(set(discover()) - {"transformers"})]


def rule_envs() -> list[tuple[str, Path, Path]]:
    """(rule, env file, script) for every rule; a function `conda:` resolved per engine."""
    out = []
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [m.start() for m in RULE.finditer(text)] + [len(text)]
        for start, end in zip(starts, starts[1:]):
            body = text[start:end]
            name = RULE.match(body).group(1)
            conda = re.search(r"conda:\n\s+(\S+)", body).group(1).strip('"')
            script = re.search(r"script:\n\s+\"\.\./(\S+)\"", body).group(1)
            if conda.endswith(".yaml"):
                envs = [conda.removeprefix("../")]
            elif conda == "engine_env":  # + the one a Transformers instance may name for GPTQ
                envs = [f"envs/{e}.yaml" for e in ENGINE_ENVS] + ["envs/gptqmodel.yaml"]
            elif conda == "eval_env":
                envs = ["envs/eval.yaml"] + [f"envs/{e}.yaml" for e in ENGINE_ENVS[1:]]
            elif conda == "quant_env":  # per method; each method's module in its own env
                envs = sorted({f"envs/{m.environment.name}.yaml" for m in QUANT_METHODS})
                out += [
                    (f"quantize_{m.name}", ROOT / f"envs/{m.environment.name}.yaml",
                     Path(inspect.getfile(m)))
                    for m in QUANT_METHODS
                ]  # fmt: skip
            else:
                raise AssertionError(f"{smk.name}: rule {name}: unknown conda: {conda}")
            out += [(name, ROOT / env, ROOT / script) for env in envs]
    return out


def test_env_files_are_generated_from_pyproject():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/gen_envs.py"), "--check"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_every_rule_has_an_env_and_a_container():
    rules = {name for name, _, _ in rule_envs()}
    assert {"model", "benchmark", "evaluate", "aggregate", "quantize_llmcompressor"} <= rules
    for smk in (ROOT / "rules").glob("*.smk"):
        text = smk.read_text()
        assert text.count("conda:") == text.count("container:") == len(RULE.findall(text)), smk


@pytest.mark.parametrize(
    "rule,env,script", rule_envs(), ids=lambda v: v if isinstance(v, str) else v.name
)
def test_env_covers_what_the_rule_imports(rule, env, script):
    dists = env_dists(env)
    missing = {
        f"{module} ({module_dist(module)}, from {where})"
        for module, where in third_party_imports(script).items()
        if module_dist(module) not in dists
    }
    assert not missing, f"{env.name} lacks what rule {rule} imports: {sorted(missing)}"


def test_the_checker_sees_a_missing_module(tmp_path):
    """The check is not vacuous: transformers.yaml without aiohttp fails the benchmark rule
    (the gap issue 25 found: engines/served.py -> client/stream.py -> aiohttp)."""
    env = tmp_path / "t.yaml"
    text = (ROOT / "envs/transformers.yaml").read_text()
    env.write_text(text.replace("      - aiohttp>=3.9\n", ""))
    _requires.cache_clear()
    dists = env_dists(env) - {"aiohttp"}  # a dependency could also pull it in
    imported = {module_dist(m) for m in third_party_imports(ROOT / "scripts/benchmark.py")}
    assert "aiohttp" in imported and "aiohttp" not in dists
