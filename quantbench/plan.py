"""Turn a schema-valid config into the list of cells to run, or fail with a message that names
the key, the bad value and what is allowed — before any job starts."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from quantbench.compat import FORMATS, is_compatible, kernels
from quantbench.engines import get_engine, weightless_engines
from quantbench.io import REPO_ROOT
from quantbench.quant import DECLARE_FORMAT, DECLARE_METHOD, QuantMethod, discover
from quantbench.status import CellKey

TASK_DIR = REPO_ROOT / "data" / "tasks"
# Keys every quantization entry may carry besides its method's own parameters.
COMMON_QUANT_KEYS = {"method", "kernel", "reference_quant"}


class ConfigError(ValueError):
    pass


# A planned cell is its key: (model, quantization, engine), the engine by its config name.
Cell = CellKey


# The registered quantization methods by name (quantbench.quant): what each declares.
Methods = Mapping[str, type[QuantMethod]]


def _unknown(key: str, value: str, allowed) -> ConfigError:
    allowed = sorted(allowed)
    hint = difflib.get_close_matches(value, allowed, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"{key}: unknown name {value!r}{did_you_mean}; allowed: {allowed}")


def _names(config: dict, section: str) -> list[str]:
    chosen = config.get("sweep", {}).get(section, "all")
    defined = list(config[section])
    if chosen == "all":
        return defined
    for name in chosen:
        if name not in defined:
            raise _unknown(f"sweep.{section}", name, defined)
    return list(chosen)


def available_tasks() -> list[str]:
    return sorted(p.stem for p in TASK_DIR.glob("*.yaml"))


def quant_format(config: dict, quant: str, methods: Methods | None = None) -> str | None:
    spec = config["quantizations"][quant]
    # A method whose format varies per entry (prequantized) declares `format` as a setting.
    return spec.get("format") or (methods or discover())[spec["method"]].format


def check_quantizations(config: dict, methods: Methods) -> None:
    """Each entry's method is registered, takes the entry's keys (their types are the schema's),
    and writes a format some engine or method declares compat rows for."""
    for name, spec in config["quantizations"].items():
        method = spec["method"]
        if method not in methods:
            err = _unknown(f"quantizations.{name}.method", method, methods)
            raise ConfigError(f"{err}; a new method is declared in {DECLARE_METHOD}")
        allowed = COMMON_QUANT_KEYS | set(methods[method].settings)
        for key in spec:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                raise ConfigError(
                    f"quantizations.{name}.{key}: not a key of method {method!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; it takes: {sorted(allowed)}"
                )
        fmt = quant_format(config, name, methods)
        if fmt not in FORMATS:
            raise ConfigError(
                f"quantizations.{name}: no engine loads checkpoint format {fmt!r} (method "
                f"{method!r}): declare its compat rows as {DECLARE_FORMAT}; known formats: "
                f"{FORMATS}"
            )


# Engines that build a quantized model's tensors themselves (--load-format dummy): each
# engine declares it (`weightless` on its class).
WEIGHTLESS_ENGINES = weightless_engines()


def engine_kind(config: dict, engine: str) -> str:
    """The registered engine an engine instance runs: its `kind`, by default its name (the
    schema check fills it in). Paths, wildcards and tables use the instance's name; what the
    engine can do (formats, kernels, scenarios, weightless loading) is its kind's."""
    settings = config["engines"].get(engine)
    return (settings or {}).get("kind", engine) if isinstance(settings, dict) else engine


def _engine_label(engine: str, kind: str) -> str:
    return repr(engine) if engine == kind else f"{engine!r} (kind {kind})"


def check_cell(config: dict, cell: Cell, methods: Methods, where: str) -> str | None:
    """None if the cell can run; else why not."""
    kind = engine_kind(config, cell.engine)
    label = _engine_label(cell.engine, kind)
    method = config["quantizations"][cell.quantization]["method"]
    fmt = quant_format(config, cell.quantization, methods)
    if methods[method].weightless:
        source = config["models"][cell.model].get("source")
        if kind not in WEIGHTLESS_ENGINES or source != "dummy":
            return (
                f"{where}: {cell.quantization} is a weightless layout (method {method}): it "
                "runs only on a dummy model with engines of kind "
                f"{sorted(WEIGHTLESS_ENGINES)}, not on {cell.model} (source {source}) with {label}"
            )
        fills = get_engine(kind).weightless_formats
        if fills is not None and fmt not in fills:
            return (
                f"{where}: engine {label} fills only the {list(fills)} layouts with random "
                f"tensors, not {fmt!r} ({cell.quantization}): quantize {cell.model} with a real "
                "method for it, or run the layout on an engine that fills every layout"
            )
    kernel = config["quantizations"][cell.quantization].get("kernel")
    if not is_compatible(fmt, kind, kernel):
        offered = kernels(fmt, kind)
        if not offered:
            return f"{where}: engine {label} cannot load format {fmt!r} ({cell.quantization})"
        return (
            f"{where}: engine {label} has no kernel {kernel!r} for format {fmt!r}; "
            f"set quantizations.{cell.quantization}.kernel to one of {offered}"
        )
    return None


def cell_engine_settings(engine: dict, cell: dict) -> dict:
    """The engine's settings for one `cells:` entry: its GPU count replaces the engine's, its
    extra_args follow the engine's (a cell-specific flag, e.g. a kernel workaround)."""
    settings = dict(engine)
    if cell.get("tensor_parallel_size"):
        settings["tensor_parallel_size"] = cell["tensor_parallel_size"]
    if cell.get("extra_args"):
        settings["extra_args"] = [*settings.get("extra_args", []), *cell["extra_args"]]
    return settings


def plan_cells(config: dict, methods: Methods | None = None) -> tuple[list[Cell], list[str]]:
    """Cells of the sweep's cross-product that can run (the others are listed as skipped, with
    why), plus every explicit cell, each of which must be valid. `methods`: the registered
    quantization methods unless given."""
    methods = discover() if methods is None else methods
    check_quantizations(config, methods)
    engines = set(config["engines"])
    for task in config.get("evaluation", {}).get("tasks", []):
        if task not in available_tasks():
            raise _unknown("evaluation.tasks", task, available_tasks())
    cells, skipped = [], []
    if config.get("sweep") is not None:
        for model in _names(config, "models"):
            for quant in _names(config, "quantizations"):
                for engine in _names(config, "engines"):
                    cell = Cell(model, quant, engine)
                    why = check_cell(config, cell, methods, "sweep")
                    (skipped.append(why) if why else cells.append(cell))
    listed: dict[tuple, int] = {}
    for i, entry in enumerate(config.get("cells", [])):
        where = f"cells[{i}]"
        key = CellKey.of(entry)
        if key in listed:
            # The first entry's options would silently win (cell_options takes the first).
            raise ConfigError(
                f"{where}: the cell {key.path()} is already cells[{listed[key]}]: "
                "list each cell once (merge their input_lengths, scenarios, options)"
            )
        listed[key] = i
        for key, section in (("model", "models"), ("quantization", "quantizations")):
            if entry[key] not in config[section]:
                raise _unknown(f"{where}.{key}", entry[key], config[section])
        if entry["engine"] not in engines:
            raise _unknown(f"{where}.engine", entry["engine"], engines)
        defined = config.get("benchmark", {}).get("scenarios", ["single"])
        extra = sorted(set(entry.get("scenarios", [])) - set(defined))
        if extra:
            raise ConfigError(
                f"{where}.scenarios: {extra} not in benchmark.scenarios {defined}; "
                "a cell runs a subset of them"
            )
        cell = CellKey.of(entry)
        why = check_cell(config, cell, methods, where)
        if why:
            raise ConfigError(why)
        if cell not in cells:
            cells.append(cell)
    if not cells:
        raise ConfigError(
            "the config plans no cell: check sweep and cells"
            + (f" ({'; '.join(skipped)})" if skipped else "")
        )
    return cells, skipped
