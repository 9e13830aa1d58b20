"""Every parse-time check of a config, in one function (`check_config`) that the workflow
(rules/common.smk) and the tests both call: each refusal is one short `ConfigError` that names
the key, what is wrong and what is allowed or how to fix it, raised before any job runs.

In order: the config files themselves (a duplicate key, or a YAML error, with file and line),
unknown keys (with the allowed keys and a did-you-mean, instead of a schema dump), the schema
(types, enums, ranges: one line naming the key path; defaults are filled in), the plan of cells
(`quantbench.plan`), then what the schema cannot see: model sources (an unknown `arch`, a missing
local directory), the calibration file and its `seq_len` against the model's context, GPUs per
job against `--resources gpu=N`, and the names `evaluation` refers to.

What only the compute node knows (an engine's executable, a GPU, the Hub) is not checked here:
those fail at run time with a message that says how to fix them.

`python -m quantbench.config_check CONFIG.yaml...` runs the same checks outside Snakemake (and
names the file and line of a YAML syntax error, which Snakemake's own message does not).
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import yaml

from quantbench.io import REPO_ROOT
from quantbench.plan import (
    Cell,
    ConfigError,
    QuantRule,
    available_tasks,
    cell_engine_settings,
    plan_cells,
)

SCHEMA = REPO_ROOT / "config" / "schema" / "config.schema.yaml"
RULES_DIR = REPO_ROOT / "rules"
# compressed-tensors presets with static activation scales: calibrated even with rtn
# (compressed_tensors.quantization.preset_name_to_scheme(s).input_activations.dynamic is False).
STATIC_ACTIVATION_SCHEMES = frozenset({"FP8"})
# A Hub repo id: `name` or `owner/name` (huggingface_hub.utils.validate_repo_id's rule).
HUB_ID = re.compile(r"^([\w.-]+/)?[\w.-]{1,96}$")


# --- the files -------------------------------------------------------------------------------


class _DuplicateKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the constructor below says so
            continue
        if first is not None:
            raise ConfigError(
                f"{key_node.start_mark.name}:{key_node.start_mark.line + 1}: duplicate key "
                f"{key!r} (first at line {first + 1}; YAML would silently keep the last): "
                "delete or merge one of them"
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_DuplicateKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _json_pairs(path: str):
    def hook(pairs):
        out = {}
        for key, value in pairs:
            if key in out:
                raise ConfigError(f"{path}: duplicate key {key!r}: delete or merge one of them")
            out[key] = value
        return out

    return hook


def load_config_file(path: str | Path) -> dict:
    """A config file as Snakemake reads it (JSON, else YAML), refusing a duplicate key and naming
    the file and line of a syntax error."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror})") from None
    try:
        data = json.loads(text, object_pairs_hook=_json_pairs(path))
    except ValueError:
        try:
            data = yaml.load(text, Loader=_loader_for(path))  # noqa: S506 - a SafeLoader
        except yaml.MarkedYAMLError as err:
            mark, start = err.problem_mark or err.context_mark, err.context_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
            what = " ".join(filter(None, [err.context, err.problem]))
            if start and mark and start.line != mark.line:
                what += f" (it starts at line {start.line + 1})"
            raise ConfigError(
                f"{where}: YAML syntax error: {what} (check the indentation and brackets there)"
            ) from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: YAML error: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file is a mapping of keys (models:, engines:, ...)")
    return data


def _loader_for(path: str):
    # PyYAML names the stream in its marks from the stream's `name` attribute.
    class Loader(_DuplicateKeyLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self.name = path

    return Loader


def merge_configs(configs: Iterable[dict]) -> dict:
    """Later files override earlier ones key by key, nested mappings merged (Snakemake's
    update_config)."""

    def update(base: dict, new: Mapping) -> dict:
        for key, value in new.items():
            if isinstance(value, Mapping) and isinstance(base.get(key), dict):
                update(base[key], value)
            else:
                base[key] = value
        return base

    out: dict = {}
    for cfg in configs:
        update(out, cfg)
    return out


# --- unknown keys and the schema -----------------------------------------------------------


@cache
def load_schema(path: str = str(SCHEMA)) -> dict:
    """The schema file, with each engine's settings (declared by its package) in `engines`
    and each scenario's (declared by its module) in `benchmark`."""
    from quantbench.engines import settings_schemas
    from quantbench.scenarios import merge_settings_schemas

    schema = yaml.safe_load(Path(path).read_text())
    engines = schema.get("properties", {}).get("engines")
    if isinstance(engines, dict):
        engines["properties"] = {**settings_schemas(), **(engines.get("properties") or {})}
    merge_settings_schemas(schema.get("properties", {}).get("benchmark"))
    return schema


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "config"


def _resolve(schema: dict, root: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    value, allowed = str(value), [str(a) for a in allowed]
    hint = difflib.get_close_matches(value, allowed, n=1)
    if not hint and len(value) >= 3:  # a shortened or lengthened key: quant, enviroment
        hint = [a for a in allowed if a.startswith(value) or value.startswith(a)][:1]
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def check_unknown_keys(node, schema: dict, root: dict, parts=()) -> None:
    """Walk the config beside the schema; an object that allows only its listed properties
    refuses any other key in one line, with the allowed keys and the closest one."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return
    if isinstance(node, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in node.items():
            if key in props:
                check_unknown_keys(value, props[key], root, (*parts, key))
            elif extra is False:
                where = _path(parts)
                raise ConfigError(
                    f"{_path((*parts, key))}: unknown key{did_you_mean(key, props)}; "
                    f"{where} takes: {', '.join(props)}"
                )
            elif isinstance(extra, dict):
                check_unknown_keys(value, extra, root, (*parts, key))
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(node):
            check_unknown_keys(item, schema["items"], root, (*parts, i))


def _short(value, limit: int = 60) -> str:
    text = {None: "null", True: "true", False: "false"}.get(value, None) if not isinstance(
        value, (list, dict)
    ) else None
    text = text or repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _leaf(error):
    """The most specific error under a oneOf / anyOf (the branch that matched the value's type)."""
    from jsonschema.exceptions import best_match

    while error.context:
        error = best_match(error.context)
    return error


_KINDS = {
    "array": "a list",
    "object": "a mapping",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_PY_KINDS = {
    "list": "a list",
    "dict": "a mapping",
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "NoneType": "null",
}


def _schema_at(root: dict, parts) -> dict:
    """The (object) schema of the config node at `parts`, following properties, additional
    properties and items; {} where it cannot be followed."""
    node = _resolve(root, root)
    for part in parts:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            props = node.get("properties", {})
            node = props.get(part, node.get("additionalProperties", {}))
        node = _resolve(node, root) if isinstance(node, dict) else {}
    return node


def format_schema_error(error) -> str:
    err = _leaf(error)
    where = _path(err.absolute_path)
    kind, arg, value = err.validator, err.validator_value, err.instance
    if kind == "enum":
        return f"{where}: {_short(value)} is not allowed{did_you_mean(value, arg)}; allowed: {arg}"
    if kind == "const":
        return f"{where}: {_short(value)} is not allowed; allowed: {arg!r}"
    if kind == "type":
        expected = " or ".join(_KINDS.get(t, t) for t in (arg if isinstance(arg, list) else [arg]))
        if value is None:
            return f"{where}: is empty (null); expected {expected}"
        found = _PY_KINDS.get(type(value).__name__, type(value).__name__)
        return f"{where}: {_short(value)} is {found}; expected {expected}"
    if kind == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        sub = _schema_at(load_schema(), err.absolute_path).get("properties", {}).get(missing, {})
        hint = f" ({sub['description']})" if isinstance(sub, dict) and "description" in sub else ""
        return f"{where}: missing key {missing!r}{hint}: add it"
    if kind == "pattern" and "propertyNames" in err.relative_schema_path:
        return f"{where}: the name {_short(value)} does not match {arg!r}: rename it"
    if kind == "uniqueItems":
        seen, dups = set(), []
        for item in value:
            if item in seen and item not in dups:
                dups.append(item)
            seen.add(item)
        return f"{where}: {dups} listed more than once in {_short(value)}: list each value once"
    if kind in ("minItems", "minProperties"):
        return f"{where}: is empty; give at least {arg}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
        return f"{where}: {_short(value)} is out of range; it must be {op[kind]} {arg}"
    if kind == "pattern":
        return f"{where}: {_short(value)} does not match the pattern {arg!r}"
    if kind == "additionalProperties":
        return f"{where}: {err.message}"
    return f"{where}: {err.message}"


@cache
def _validator_class(path: str):
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        # As snakemake.utils.validate(set_default=True): fill defaults, then validate.
        for prop, sub in properties.items():
            if isinstance(sub, dict) and "default" in sub and isinstance(instance, dict):
                instance.setdefault(prop, sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})


def check_schema(config: dict, schema_path: str | Path = SCHEMA) -> None:
    """Unknown keys, then the schema (one line for the first error); fills defaults in place."""
    from jsonschema.exceptions import best_match

    schema = load_schema(str(schema_path))
    check_unknown_keys(config, schema, schema)
    validator = _validator_class(str(schema_path))(schema)
    error = best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(format_schema_error(error))


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
    """Whether a quantization reads calibration samples (quantbench/quant/*_method.py)."""
    method = spec.get("method")
    if method == "gptqmodel":
        return True
    if method == "llmcompressor":
        return (
            spec.get("algorithm", "rtn") != "rtn"
            or spec.get("scheme") in STATIC_ACTIVATION_SCHEMES
        )
    return False


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
    users = [c for c in cells if calibrates(config["quantizations"][c.quant])]
    if not users:
        return
    dataset = cal.get("dataset", "data/corpus.txt")
    if not dataset.startswith("hf:") and not _calibration_file_exists(dataset):
        raise ConfigError(
            f"calibration.dataset: file {dataset!r} not found (needed by {users[0].quant}; "
            "relative paths are the working directory's or the repository's): fix the path, "
            "or use hf:<dataset id>"
        )
    seq_len = cal.get("seq_len", 256)
    for cell in users:
        ctx = contexts.get(cell.model)
        if ctx is not None and seq_len > ctx:
            raise ConfigError(
                f"calibration.seq_len: {seq_len} is beyond model {cell.model}'s context "
                f"(max_position_embeddings {ctx}), and {cell.quant} calibrates on it: "
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
                f"{key}: {tp} GPUs for {cell.model}/{cell.quant}/{cell.engine}, but this run "
                f"gives a job at most {gpus} (--resources gpu={gpus}, e.g. from the profile): "
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
    quant_rules: Mapping[str, QuantRule] | None = None,
    gpus: int | None = None,
    schema: str | Path = SCHEMA,
) -> tuple[list[Cell], list[str]]:
    """Every parse-time check; returns the planned cells and the sweep's skipped ones (why).
    `config` is the merged config Snakemake built from `configfiles` (re-read here only to find
    what merging hides: a duplicate key); defaults are filled in place. `gpus`: the most GPUs one
    job may get (`--resources gpu=N`), None when unknown (then not checked)."""
    check_files_and_schema(config, configfiles, schema)
    rules = dict(quant_rules) if quant_rules is not None else read_quant_rules()
    cells, skipped = plan_cells(config, rules)
    contexts = check_models(config)
    check_calibration(config, cells, contexts)
    check_gpus(config, cells, gpus)
    check_evaluation(config, cells)
    return cells, skipped


def read_quant_rules(rules_dir: str | Path = RULES_DIR) -> dict[str, QuantRule]:
    """The `register_quant_rule(...)` declarations of rules/quantize*.smk, read without
    Snakemake (for the tests and the command line; the workflow registers them itself)."""
    out: dict[str, QuantRule] = {}
    for smk in sorted(Path(rules_dir).glob("quantize*.smk")):
        text = smk.read_text()
        for match in re.finditer(r"^register_quant_rule\(", text, re.MULTILINE):
            start, depth = match.end() - 1, 0
            for end in range(start, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            call = ast.parse(text[match.start() : end + 1], mode="eval").body
            args = [ast.literal_eval(a) for a in call.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
            method, fmt = (args + [kwargs.pop("format", None)])[:2]
            out[method] = QuantRule(
                method,
                fmt,
                frozenset(kwargs.get("params", ())),
                bool(kwargs.get("weightless", False)),
            )
    return out


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
