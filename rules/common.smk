# Config validation, the plan of cells, wildcard constraints and input functions.
import os
import re
import sys
from pathlib import Path

from snakemake.utils import validate

# This file and the scripts import the installed quantbench package (`pip install .`; see
# docs/packaging.md), so the workflow also runs as a Snakemake `module`. Jobs in their own
# environment (--sdm conda/apptainer) reach it through Snakemake's script search path.
try:
    import quantbench
except ImportError:
    raise WorkflowError(
        "quantbench is not installed in the Python that runs Snakemake: "
        "`pip install '.[quantize,eval]'` in the workflow's directory (docs/packaging.md)"
    ) from None
# The workflow's own files (data/, config/schema, reference/) for the installed package: this
# directory, also as a `module` (workflow.basedir is then the caller's); a remote module
# (github(...)) uses the copies installed with the package (share/quantbench).
_rules_dir = str(workflow.current_basedir.get_path_or_uri(secret_free=True))
if os.path.isdir(_rules_dir):
    os.environ.update(QUANTBENCH_ROOT=str(Path(_rules_dir).resolve().parent))

from quantbench.plan import (
    ConfigError,
    cell_engine_settings,
    engine_kind,
    quant_format,
)

from quantbench.quant import get_quant_method

from quantbench.config_check import check_config, check_files_and_schema

from quantbench.io import REPO_ROOT

from quantbench.status import CellKey

from quantbench.scenarios import report_files as scenario_report_files, write_captions

SCHEMA = REPO_ROOT / "config" / "schema" / "config.schema.yaml"
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
# Each scenario's tables and plots, with their captions, as its module declares them
# (quantbench/scenarios/); the report's other tables after them.
SCENARIO_REPORT = scenario_report_files()
SCENARIO_CAPTIONS = write_captions(".snakemake/quantbench/captions")
REPORT_TABLES = [
    *(f.removesuffix(".md") for f, _, _ in SCENARIO_REPORT if f.endswith(".md")),
    "engine",
    "quality",
    "checkpoints",
]


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
            config, workflow.configfiles, gpus=MAX_GPUS, schema=SCHEMA
        )
    except ConfigError as err:
        raise WorkflowError(f"config error: {err}") from None
    for why in skipped:
        print(f"quantbench: not planned: {why}", file=sys.stderr)
    return cells


def cell_path(kind, name, cells=None):
    return [
        f"{RESULTS}/{kind}/{c.model}/{c.quantization}/{c.engine}/{name}"
        for c in (cells or CELLS)
    ]


def quant_params(wildcards):
    return config["quantizations"][wildcards.quant]


def quant_format_of(wildcards):
    """The checkpoint format the quantization's method declares (or its entry states)."""
    return quant_format(config, wildcards.quant)


def quant_env(wildcards):
    """The environment the quantization's method declares (`environment` on its class)."""
    method = config["quantizations"][wildcards.quant]["method"]
    return f"../envs/{get_quant_method(method).environment.name}.yaml"


def cell_options(wildcards):
    """A `cells:` entry's overrides (input lengths, GPUs, extra args, known-unsupported)."""
    for entry in config.get("cells", []):
        if CellKey.of(entry) == (wildcards.model, wildcards.quant, wildcards.engine):
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
    # A cell's input_lengths: every scenario that measures by input length.
    for settings in scenarios.values():
        if lengths and "input_lengths" in settings:
            settings["input_lengths"] = lengths
    return scenarios


def skipped_scenarios(wildcards):
    """Scenarios the cell's `cells:` entry leaves out: written as skipped, not run."""
    wanted = cell_options(wildcards).get("scenarios", SCENARIOS)
    return [s for s in SCENARIOS if s not in wanted]


def eval_inputs(wildcards):
    if not config["evaluation"]["enabled"]:
        return []
    return cell_path("eval", "quality.json")


def kind_of(wildcards):
    """The engine kind of the cell's engine instance (its environment, image, behaviour)."""
    return engine_kind(config, wildcards.engine)


def engine_env(wildcards):
    """Each engine kind's own environment (`--sdm conda`): vLLM and SGLang pin different
    torches. An instance may name another (`conda_env`), e.g. Transformers with GPTQModel.
    """
    settings = config["engines"].get(wildcards.engine) or {}
    return f"../envs/{settings.get('conda_env') or kind_of(wildcards)}.yaml"


def eval_env(wildcards):
    """lm-eval beside the engine: in-process Transformers needs envs/eval.yaml; a served engine
    is evaluated in its own environment (which carries lm-eval), since the job starts it.
    """
    return (
        "../envs/eval.yaml"
        if kind_of(wildcards) == "transformers"
        else engine_env(wildcards)
    )


# `--sdm apptainer`: pinned images, the engines' official ones for their jobs (docs/packaging.md).
CPU_IMAGE = "docker://condaforge/miniforge3:24.11.3-2"
ENGINE_IMAGES = {
    "vllm": "docker://vllm/vllm-openai:v0.24.0",
    "sglang": "docker://lmsysorg/sglang:v0.5.17-cu130",
}


def engine_image(wildcards):
    return ENGINE_IMAGES.get(kind_of(wildcards), CPU_IMAGE)


# Run-time failures (rules/failures.smk): retry what failed, report what exists.
from quantbench.guard import unwritable as _unwritable
from quantbench.results import needs_retry as _needs_retry


def planned_results(cells):
    """Every result file the plan writes, upstream first."""
    paths = []
    for c in cells:
        paths += [
            f"{RESULTS}/models/{c.model}/model.json",
            f"{RESULTS}/quantized/{c.model}/{c.quantization}/quant.json",
            f"{RESULTS}/serve/{c.model}/{c.quantization}/{c.engine}/launch.json",
            *cell_path("bench", "engine.json", [c]),
            *(p for s in SCENARIOS for p in cell_path("bench", f"{s}.json", [c])),
        ]
        if config["evaluation"]["enabled"]:
            paths += cell_path("eval", "quality.json", [c])
    return list(dict.fromkeys(paths))


def _retry_failed(dag_settings):
    """Failed or unreadable results of the plan are forced to run again (only them, and what
    depends on them); unsupported, skipped and not-applicable results stay."""
    targets = set(dag_settings.targets or ())
    if targets - {"all", "aggregate", "compare_published"}:
        return  # explicit files: forcing others would make them targets too
    planned = planned_results(CELLS)
    failed = [p for p in planned if _needs_retry(p)]
    # A result a killed job never wrote: Snakemake alone would not rebuild a missing
    # intermediate file once the report (written by onerror) is newer.
    missing = [p for p in planned if not os.path.exists(p)]
    if len(missing) < len(planned):
        failed += missing
    if failed:
        dag_settings.forcerun = frozenset(dag_settings.forcerun) | set(failed)
        shown = "".join(f"\n  {p}" for p in failed[:20])
        more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
        print(
            f"quantbench: {len(failed)} failed or missing result(s) will be made again:"
            f"{shown}{more}",
            file=sys.stderr,
        )


def before_dag(executing):
    """Just before Snakemake builds its DAG (it knows its settings only after this file is
    parsed): refuse an unwritable results/, re-run incomplete jobs (an interrupted run leaves
    them) and add the failed results to --forcerun."""
    if executing:
        problem = _unwritable(RESULTS)
        if problem:
            raise WorkflowError(problem)
        workflow.dag_settings.force_incomplete = True
    try:
        _retry_failed(workflow.dag_settings)
    except (AttributeError, TypeError, ValueError) as err:
        print(f"quantbench: failed cells not scheduled again: {err}", file=sys.stderr)


def report_what_exists():
    """The report over whatever result files exist (a run that failed or was interrupted):
    every planned cell appears, measured, failed or not run (with the log to read)."""
    try:
        from quantbench.report import build_report

        bench = [p for s in SCENARIOS for p in cell_path("bench", f"{s}.json")]
        quality = eval_inputs(None)
        keys = ("evaluation", "models", "quantizations", "benchmark")
        build_report(
            bench,
            cell_path("bench", "engine.json"),
            quality,
            sorted(
                {
                    f"{RESULTS}/quantized/{c.model}/{c.quantization}/quant.json"
                    for c in CELLS
                }
            ),
            Path(REPORT),
            samples=[p.replace("quality.json", "samples.jsonl") for p in quality],
            config={k: config.get(k) for k in keys},
        )
        print(
            f"quantbench: the run failed; {REPORT}/ reports every planned cell "
            "(failed and not-run cells name their log). Fix the cause and run again: only "
            "what failed or did not run is run.",
            file=sys.stderr,
        )
    except Exception as err:  # noqa: BLE001 - the run's own error comes first
        print(f"quantbench: no report of this failed run: {err}", file=sys.stderr)
