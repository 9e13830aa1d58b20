"""Every parse-time check of a config, in one function (`check_config`) that the workflow
(rules/common.smk) and the tests both call: each refusal is one short `ConfigError` that names
the key, what is wrong and what is allowed or how to fix it, raised before any job runs.

In order: the config files themselves (a duplicate key, or a YAML error, with file and line:
quantbench.config_files), each engine instance's kind and settings, unknown keys (with the
allowed keys and a did-you-mean, instead of a schema dump) and the schema (types, enums, ranges:
one line naming the key path; defaults are filled in: quantbench.config_schema), the plan of cells
(`quantbench.plan`), then what the schema cannot see: model sources (an unknown `arch`, a missing
local directory), the calibration file and its `seq_len` against the model's context, GPUs per
job against `--resources gpu=N`, and the names `evaluation` refers to.

What only the compute node knows (an engine's executable, a GPU, the Hub) is not checked here:
those fail at run time with a message that says how to fix them.

`python -m quantbench.config_check CONFIG.yaml...` runs the same checks outside Snakemake (and
names the file and line of a YAML syntax error, which Snakemake's own message does not).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from quantbench.config_files import load_config_file, merge_configs
from quantbench.config_schema import SCHEMA, check_schema, did_you_mean, load_schema
from quantbench.io import REPO_ROOT
from quantbench.plan import (
    Cell,
    ConfigError,
    Methods,
    available_tasks,
    cell_engine_settings,
    plan_cells,
)

# Re-exported: the workflow, the tools and the tests import these from here.
__all__ = [
    "SCHEMA",
    "check_config",
    "check_files_and_schema",
    "check_schema",
    "load_config_file",
    "load_schema",
    "merge_configs",
]
# A Hub repo id: `name` or `owner/name` (huggingface_hub.utils.validate_repo_id's rule).
HUB_ID = re.compile(r"^([\w.-]+/)?[\w.-]{1,96}$")


# --- the models --------------------------------------------------------------------------------


def looks_local(ident: str) -> bool:
    """An `hf` id that can only be a path: absolute, ./ ../ ~, or not a valid Hub repo id
    (`owner/name`, one slash at most). `Qwen/Qwen3-8B` is a Hub id unless such a directory
    exists (then it is used as the local directory, as quantbench.models.fetch_hf does)."""
    return ident.startswith(("/", "./", "../", "~", ".\\")) or not HUB_ID.match(ident)


def _arch_context(arch: dict) -> int | None:
    ctx = arch.get("max_position_embeddings")
    return ctx if isinstance(ctx, int) else None


def model_context(name: str, spec: dict) -> int | None:
    """The model's max_position_embeddings where it is known at parse time (the tiny model, a
    shipped or given architecture, a local directory's config.json); None for a Hub id. Refuses
    an architecture or local directory that does not exist."""
    from quantbench.archs import list_archs
    from quantbench.models import TINY_ARCH, ModelSourceError, resolve_arch

    source, arch = spec.get("source"), spec.get("arch")
    if source == "tiny" and not isinstance(arch, str):
        return _arch_context({**TINY_ARCH, **(arch or {})})
    if source in ("tiny", "dummy"):
        try:
            return _arch_context(resolve_arch(arch))
        except ModelSourceError:
            raise ConfigError(
                f"models.{name}.arch: unknown architecture {arch!r}"
                f"{did_you_mean(arch, list_archs())}: give a config.json path or one of "
                f"{', '.join(list_archs())}"
            ) from None
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"models.{name}.arch: {arch!r} is not a readable config.json ({err})"
            ) from None
    if source == "hf":
        ident = spec["id"]
        path = Path(ident)
        if path.is_dir():
            config_json = path / "config.json"
            try:
                return _arch_context(json.loads(config_json.read_text()))
            except (OSError, ValueError):
                return None  # a directory without a readable config.json: the job says so
        if ident.startswith("~"):
            raise ConfigError(
                f"models.{name}.id: {ident!r}: '~' is not expanded; give the directory's full "
                f"path ({Path(ident).expanduser()})"
            )
        if looks_local(ident):
            what = "is a file, not a directory" if path.exists() else "does not exist"
            raise ConfigError(
                f"models.{name}.id: local model directory {ident!r} {what} (relative paths are "
                "the working directory's): fix the path, or give a Hub id such as Qwen/Qwen3-8B"
            )
    return None


def calibrates(spec: dict) -> bool:
    """Whether a quantization reads calibration samples (its method's `calibrates`)."""
    from quantbench.quant import get_quant_method

    return get_quant_method(spec["method"]).calibrates(spec)


def _calibration_file_exists(dataset: str) -> bool:
    # As quantbench.quant.calibration: the working directory's path, else the repository's.
    path = Path(dataset)
    return path.is_file() or (not path.is_absolute() and (REPO_ROOT / path).is_file())


# --- the whole config --------------------------------------------------------------------------


def _cell_entries(config: dict) -> dict[Cell, dict]:
    out: dict[Cell, dict] = {}
    for entry in config.get("cells") or []:
        out.setdefault(Cell(entry["model"], entry["quantization"], entry["engine"]), entry)
    return out


def check_models(config: dict) -> dict[str, int | None]:
    """Every defined model's source (planned or not), and its context where known."""
    return {name: model_context(name, spec) for name, spec in config["models"].items()}


def check_calibration(config: dict, cells: list[Cell], contexts: dict) -> None:
    cal = config.get("calibration", {})
    users = [c for c in cells if calibrates(config["quantizations"][c.quantization])]
    if not users:
        return
    dataset = cal.get("dataset", "data/corpus.txt")
    if not dataset.startswith("hf:") and not _calibration_file_exists(dataset):
        raise ConfigError(
            f"calibration.dataset: file {dataset!r} not found (needed by {users[0].quantization}; "
            "relative paths are the working directory's or the repository's): fix the path, "
            "or use hf:<dataset id>"
        )
    seq_len = cal.get("seq_len", 256)
    for cell in users:
        ctx = contexts.get(cell.model)
        if ctx is not None and seq_len > ctx:
            raise ConfigError(
                f"calibration.seq_len: {seq_len} is beyond model {cell.model}'s context "
                f"(max_position_embeddings {ctx}), and {cell.quantization} calibrates on it: "
                f"set calibration.seq_len to at most {ctx}"
            )


def check_gpus(config: dict, cells: list[Cell], gpus: int | None) -> None:
    """A job's GPUs (tensor_parallel_size) beyond what `--resources gpu=N` gives one job:
    Snakemake would lower the job's request while the server still starts that many ranks."""
    if not gpus or gpus < 1:
        return
    entries = _cell_entries(config)
    for cell in cells:
        entry = entries.get(cell, {})
        tp = cell_engine_settings(config["engines"][cell.engine], entry).get(
            "tensor_parallel_size", 1
        )
        if tp > gpus:
            key = (
                f"cells[{config['cells'].index(entry)}].tensor_parallel_size"
                if entry.get("tensor_parallel_size")
                else f"engines.{cell.engine}.tensor_parallel_size"
            )
            raise ConfigError(
                f"{key}: {tp} GPUs for {cell.model}/{cell.quantization}/{cell.engine}, but this "
                f"run gives a job at most {gpus} (--resources gpu={gpus}, e.g. from the profile): "
                f"lower it, or run with --resources gpu={tp}"
            )


def measured_input_lengths(config: dict, cells: list[Cell]) -> set[int]:
    bench = config.get("benchmark", {})
    scenarios = bench.get("scenarios", ["single"])
    default = bench.get("single", {}).get("input_lengths", [])
    entries = _cell_entries(config)
    out: set[int] = set()
    for cell in cells:
        entry = entries.get(cell, {})
        if "single" in entry.get("scenarios", scenarios):
            out.update(entry.get("input_lengths") or default)
    return out


def check_evaluation(config: dict, cells: list[Cell]) -> None:
    ev = config.get("evaluation", {})
    tasks = ev.get("tasks", [])
    if ev.get("enabled", True) and not tasks:
        raise ConfigError(
            "evaluation.tasks: empty while evaluation.enabled is true: list tasks (available: "
            f"{', '.join(available_tasks())}) or set evaluation.enabled: false"
        )
    length = ev.get("frontier_input_len")
    if length is not None:
        measured = sorted(measured_input_lengths(config, cells))
        if length not in measured:
            raise ConfigError(
                f"evaluation.frontier_input_len: {length} is not a measured batch-1 input length;"
                f" measured: {measured or 'none (no cell runs the single scenario)'}: pick one "
                "or null (the smallest)"
            )
    task = ev.get("frontier_task")
    if task is not None:
        allowed = [*tasks, *(["all"] if len(tasks) > 1 else [])]
        if task not in allowed:
            raise ConfigError(
                f"evaluation.frontier_task: {task!r} is not evaluated{did_you_mean(task, allowed)};"
                f" allowed: {allowed} or null (every task pooled)"
            )
    models = list(config["models"])
    for model, entries in (ev.get("published") or {}).items():
        if model not in models:
            raise ConfigError(
                f"evaluation.published: {model!r} is not a model of this config"
                f"{did_you_mean(model, models)}; models: {models}"
            )
        for name in entries:
            if name not in tasks:
                raise ConfigError(
                    f"evaluation.published.{model}: task {name!r} is not in evaluation.tasks"
                    f"{did_you_mean(name, tasks)}; tasks: {tasks}"
                )


def check_files_and_schema(
    config: dict, configfiles: Iterable[str | Path] = (), schema: str | Path = SCHEMA
) -> None:
    """The first checks, which the workflow runs before its rules read the config: each config
    file re-read for a duplicate key, then unknown keys and the schema (defaults filled in)."""
    for path in configfiles:
        load_config_file(path)
    check_schema(config, schema)


def check_config(
    config: dict,
    configfiles: Iterable[str | Path] = (),
    methods: Methods | None = None,
    gpus: int | None = None,
    schema: str | Path = SCHEMA,
) -> tuple[list[Cell], list[str]]:
    """Every parse-time check; returns the planned cells and the sweep's skipped ones (why).
    `config` is the merged config Snakemake built from `configfiles` (re-read here only to find
    what merging hides: a duplicate key); defaults are filled in place. `gpus`: the most GPUs one
    job may get (`--resources gpu=N`), None when unknown (then not checked). `methods`: the
    registered quantization methods (quantbench.quant) unless given."""
    check_files_and_schema(config, configfiles, schema)
    cells, skipped = plan_cells(config, methods)
    contexts = check_models(config)
    check_calibration(config, cells, contexts)
    check_gpus(config, cells, gpus)
    check_evaluation(config, cells)
    return cells, skipped


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m quantbench.config_check",
        description="Run the workflow's parse-time config checks on config files (later "
        "files override earlier ones, as with snakemake --configfile A B).",
    )
    parser.add_argument("configfiles", nargs="+")
    parser.add_argument("--gpus", type=int, default=None, help="as --resources gpu=N")
    args = parser.parse_args(argv)
    try:
        config = merge_configs(load_config_file(p) for p in args.configfiles)
        cells, skipped = check_config(config, (), gpus=args.gpus)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 1
    for why in skipped:
        print(f"not planned: {why}", file=sys.stderr)
    print(f"ok: {len(cells)} cells planned")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
