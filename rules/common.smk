# Config validation, the plan of cells, wildcard constraints and input functions.
import os
import re
import sys
from pathlib import Path

from snakemake.utils import validate

# Scripts import the package from this workflow's own tree, wherever it was copied; the
# caller's own PYTHONPATH (e.g. where an engine is installed) follows it.
sys.path.insert(0, workflow.basedir)
_caller_path = dict(os.environ).get("PYTHONPATH", "")
os.environ.update(
    PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, _caller_path]))
)

from quantbench.plan import ConfigError, QuantRule, cell_engine_settings, plan_cells

from quantbench.config_check import check_config, check_files_and_schema

SCHEMA = Path(workflow.basedir, "config", "schema", "config.schema.yaml")
# The most GPUs one job may get: --resources gpu=N (profiles/local sets 1); None = not capped.
try:
    MAX_GPUS = getattr(workflow.global_resources.get("gpu"), "value", None)
except AttributeError:
    MAX_GPUS = None
# Duplicate keys in the config files, unknown keys, the schema (defaults filled in) before any
# rule reads the config; plan() below runs every check (quantbench/config_check.py).
try:
    check_files_and_schema(config, workflow.configfiles, SCHEMA)
except ConfigError as err:
    raise WorkflowError(f"config error: {err}") from None

RESULTS = "results"
REPORT = f"{RESULTS}/report"
SCENARIOS = config["benchmark"]["scenarios"]
REPORT_TABLES = [
    "speed",
    "serving",
    "batch",
    "clients",
    "engine",
    "quality",
    "checkpoints",
]
QUANT_RULES = {}


def register_quant_rule(method, format, params=(), weightless=False):
    """Declare a quantize rule's method, its checkpoint format and its config keys; a
    weightless method writes a layout the served engine fills (`--load-format dummy`).
    """
    QUANT_RULES[method] = QuantRule(method, format, frozenset(params), weightless)


def quants_of(method):
    """Wildcard regex matching the configured quantizations that use `method`."""
    names = [q for q, s in config["quantizations"].items() if s["method"] == method]
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    model=_alternatives(config["models"]),
    quant=_alternatives(config["quantizations"]),
    engine=_alternatives(config["engines"]),


def plan():
    try:
        cells, skipped = check_config(
            config, workflow.configfiles, QUANT_RULES, gpus=MAX_GPUS, schema=SCHEMA
        )
    except ConfigError as err:
        raise WorkflowError(f"config error: {err}") from None
    for why in skipped:
        print(f"quantbench: not planned: {why}", file=sys.stderr)
    return cells


def cell_path(kind, name, cells=None):
    return [
        f"{RESULTS}/{kind}/{c.model}/{c.quant}/{c.engine}/{name}"
        for c in (cells or CELLS)
    ]


def quant_params(wildcards):
    return config["quantizations"][wildcards.quant]


def cell_options(wildcards):
    """A `cells:` entry's overrides (input lengths, GPUs, extra args, known-unsupported)."""
    for entry in config.get("cells", []):
        key = (entry["model"], entry["quantization"], entry["engine"])
        if key == (wildcards.model, wildcards.quant, wildcards.engine):
            return entry
    return {}


def engine_settings(wildcards):
    return cell_engine_settings(
        config["engines"][wildcards.engine], cell_options(wildcards)
    )


def gpus(wildcards):
    return engine_settings(wildcards).get("tensor_parallel_size", 1)


def scenario_settings(wildcards):
    scenarios = {s: dict(config["benchmark"][s]) for s in SCENARIOS}
    lengths = cell_options(wildcards).get("input_lengths")
    if lengths and "single" in scenarios:
        scenarios["single"]["input_lengths"] = lengths
    return scenarios


def skipped_scenarios(wildcards):
    """Scenarios the cell's `cells:` entry leaves out: written as skipped, not run."""
    wanted = cell_options(wildcards).get("scenarios", SCENARIOS)
    return [s for s in SCENARIOS if s not in wanted]


def eval_inputs(wildcards):
    if not config["evaluation"]["enabled"]:
        return []
    return cell_path("eval", "quality.json")


def engine_env(wildcards):
    """Each engine's own environment (`--sdm conda`): vLLM and SGLang pin different torches."""
    return f"../envs/{wildcards.engine}.yaml"
