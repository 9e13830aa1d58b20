"""The config's schema check: unknown keys named with the allowed ones and a did-you-mean,
then the JSON schema (types, enums, ranges) as one line naming the key path, defaults filled in.

Engines are named instances (`engines: {sglang-long: {kind: sglang, ...}}`): each instance's
`kind` (default: its name) must be a registered engine, and its keys are checked against that
kind's declared settings (quantbench/engines/<kind>/, the `settings` of its class).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml

from quantbench.io import REPO_ROOT
from quantbench.plan import ConfigError

SCHEMA = REPO_ROOT / "config" / "schema" / "config.schema.yaml"
KIND_KEY = {
    "type": "string",
    "description": "the engine this instance runs (quantbench/engines/<kind>/); default: the "
    "entry's name",
}
CONDA_ENV_KEY = {
    "type": "string",
    "enum": sorted(p.stem for p in (REPO_ROOT / "envs").glob("*.yaml")),
    "description": "the environment (envs/<name>.yaml) this instance's jobs run in with "
    "--sdm conda; default: its kind's (e.g. `gptqmodel` for Transformers to load GPTQ "
    "checkpoints on GPTQModel's packed kernels)",
}


@cache
def load_schema(path: str = str(SCHEMA)) -> dict:
    """The schema file, with each engine kind's settings (declared by its package) in `engines`:
    an entry named after a kind takes that kind's settings; an entry of another name names its
    `kind` (check_schema checks it against that kind's settings); and each quantization
    method's keys (declared by its class) in `quantizations` entries; each scenario's settings
    (declared by its module) in `benchmark`."""
    from quantbench.engines import settings_schemas
    from quantbench.quant import entry_schemas
    from quantbench.scenarios import merge_settings_schemas

    schema = yaml.safe_load(Path(path).read_text())
    engines = schema.get("properties", {}).get("engines")
    if isinstance(engines, dict):
        kinds = settings_schemas()
        engines["properties"] = kinds
        engines["additionalProperties"] = {
            "type": "object",
            "description": "an engine instance of a name of your choice: `kind` picks the engine, "
            "whose settings (engines.<kind>.* above) it takes",
            "required": ["kind"],
            "properties": {
                "kind": {**KIND_KEY, "enum": sorted(kinds)},
                "conda_env": CONDA_ENV_KEY,
            },
        }
    quants = schema.get("properties", {}).get("quantizations", {}).get("additionalProperties")
    if isinstance(quants, dict):
        quants["allOf"] = [*quants.get("allOf", []), *entry_schemas()]
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
    # `is`, not a dict lookup: 0 == False and 1 == True would read as booleans.
    named = [text for v, text in ((None, "null"), (True, "true"), (False, "false")) if value is v]
    text = named[0] if named else repr(value)
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


def format_schema_error(error, schema: dict | None = None) -> str:
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
        node = _schema_at(schema or load_schema(), err.absolute_path)
        sub = node.get("properties", {}).get(missing, {})
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


# --- engine instances --------------------------------------------------------------------------


def resolve_engine_kinds(config: dict) -> None:
    """Fill in each engine instance's `kind` (default: its name, when that is an engine kind),
    refusing a kind no engine package registers."""
    from quantbench.engines import discover

    engines = config.get("engines")
    if not isinstance(engines, dict):
        return  # the schema says what is wrong
    kinds = sorted(discover())
    for name, settings in engines.items():
        if not isinstance(settings, dict):
            continue
        if "kind" not in settings and name not in kinds:
            raise ConfigError(
                f"engines.{name}.kind: missing, and {name!r} is not an engine kind"
                f"{did_you_mean(name, kinds)}: add kind: (one of {', '.join(kinds)}) or name "
                "the entry after its kind"
            )
        kind = settings.setdefault("kind", name)
        if not isinstance(kind, str) or kind not in kinds:
            raise ConfigError(
                f"engines.{name}.kind: unknown engine kind {_short(kind)}"
                f"{did_you_mean(kind, kinds)}; known kinds: {', '.join(kinds)} "
                "(quantbench/engines/<kind>/)"
            )


def _engine_kind_schemas(base: dict) -> dict[str, dict]:
    """Each kind's settings as an instance takes them: `kind` besides."""
    kinds = base.get("properties", {}).get("engines", {}).get("properties", {})
    return {
        name: {
            **s,
            "properties": {
                "kind": {**KIND_KEY, "const": name},
                "conda_env": CONDA_ENV_KEY,
                **s.get("properties", {}),
            },
        }
        for name, s in kinds.items()
    }


def schema_for(config: dict, base: dict) -> dict:
    """`base` with each engine instance of `config` under its own name, taking its kind's
    settings (instances resolved by resolve_engine_kinds)."""
    engines = config.get("engines")
    block = base.get("properties", {}).get("engines")
    if not isinstance(engines, dict) or not isinstance(block, dict):
        return base
    kinds = _engine_kind_schemas(base)
    instances = {
        name: kinds.get(s.get("kind") if isinstance(s, dict) else name, {"type": "object"})
        for name, s in engines.items()
    }
    block = {**block, "properties": instances, "additionalProperties": False}
    return {**base, "properties": {**base["properties"], "engines": block}}


def check_engine_keys(config: dict, base: dict) -> None:
    """A key an instance's kind does not take, named with the instance, its kind and which
    kinds do take it (a vLLM key under an SGLang instance)."""
    kinds = _engine_kind_schemas(base)
    for name, settings in (config.get("engines") or {}).items():
        if not isinstance(settings, dict) or settings.get("kind") not in kinds:
            continue
        kind = settings["kind"]
        props = kinds[kind].get("properties", {})
        for key in settings:
            if key in props:
                continue
            others = [k for k, s in kinds.items() if key in s.get("properties", {})]
            hint = f" (a setting of {', '.join(others)})" if others else did_you_mean(key, props)
            of_kind = "" if name == kind else f" for an engine of kind {kind}"
            raise ConfigError(
                f"engines.{name}.{key}: unknown key{of_kind}{hint}; "
                f"engines.{name} takes: {', '.join(props)}"
            )


def check_schema(config: dict, schema_path: str | Path = SCHEMA) -> None:
    """Engine kinds, unknown keys, then the schema (one line for the first error); fills
    defaults (and each engine instance's `kind`) in place."""
    from jsonschema.exceptions import best_match

    base = load_schema(str(schema_path))
    resolve_engine_kinds(config)
    check_engine_keys(config, base)
    schema = schema_for(config, base)
    check_unknown_keys(config, schema, schema)
    validator = _validator_class(str(schema_path))(schema)
    error = best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(format_schema_error(error, schema))
