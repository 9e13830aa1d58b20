"""Benchmark scenarios, one module each, found by looking: every module of this package
registers its scenario with `@register_scenario(name)`. A scenario declares its settings (the
config's `benchmark.<name>` block, merged into the schema when it is loaded), what it needs of
an engine, how it runs against a loaded engine, the rows it records when it cannot run, and its
report tables and plots, which the report, the index page and the aggregate rule's outputs
iterate. Adding a scenario is adding a module here and naming it in the config
(docs/adding-a-scenario.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

POSITIVE_INT = {"type": "integer", "minimum": 1}


def input_lengths_setting(default: list[int]) -> dict:
    """The `input_lengths` setting of a scenario measured per batch-1 input length (a cell's own
    `input_lengths` replaces it: rules/common.smk)."""
    return {
        "type": "array",
        "items": POSITIVE_INT,
        "minItems": 1,
        "uniqueItems": True,
        "default": default,
    }


@dataclass(frozen=True)
class Table:
    """A report table: `results/report/<name>.{csv,md,html}`. `build(cells)` makes it from every
    measured row (quantbench.report.load_bench); without it, the scenario's rows in `columns`
    (quantbench.tables.scenario_table). `caption` is the Snakemake report's text for it;
    `headline` tables show open on the index page, the others folded."""

    name: str
    title: str
    caption: str
    columns: tuple[str, ...] = ()
    build: Callable | None = None
    headline: bool = False


@dataclass(frozen=True)
class Plot:
    """A report figure, `results/report/<file>`, drawn by `draw(cells, path)`."""

    file: str
    title: str
    caption: str
    draw: Callable


class Scenario:
    """One benchmark scenario. Subclasses declare:

    - `settings`: the keys of `benchmark.<name>` as JSON-schema properties, with defaults;
    - `requires`: engine capabilities it calls (`engine_capabilities`): `generate` (one
      batch-1 request; every engine), `requests` (concurrent requests on a server's
      scheduler), `own_client` (the engine's own benchmark tool), `generation_memory` (an
      in-process engine's memory at a generation's last token);
    - `run(engine, prompts, settings, progress)` -> (rows, raw records, extra result fields);
    - `failed_rows(settings, status, reason)`: one row per planned measurement, so a cell
      that failed or could not run still shows each of them in the tables;
    - `tables` and `plots`: its part of the report.
    """

    name: ClassVar[str] = ""  # set by @register_scenario
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ("generate",)
    settings: ClassVar[dict[str, dict]] = {}
    tables: ClassVar[tuple[Table, ...]] = ()
    plots: ClassVar[tuple[Plot, ...]] = ()

    @classmethod
    def settings_schema(cls) -> dict:
        schema = {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": dict(cls.settings),
        }
        if cls.description:
            schema["description"] = cls.description
        return schema

    def run(self, engine, prompts, settings: dict, progress: bool = True) -> tuple:
        raise NotImplementedError

    def failed_rows(self, settings: dict, status: str, reason: str) -> list[dict]:
        row = {"scenario": self.name, "status": status, "reason": reason}
        if "input_len" in settings:
            row["input_len"] = settings["input_len"]
        return [row]

    def summarize(self, rows: list[dict]) -> list[dict] | None:
        """A summary beside the rows in the result file (None: none)."""
        return None

    def table(self, spec: Table, cells):
        from quantbench.tables import scenario_table

        if spec.build is not None:
            return spec.build(cells)
        return scenario_table(cells, self.name, list(spec.columns))


SCENARIOS: dict[str, Scenario] = {}
_discovered = False


def register_scenario(name: str):
    def wrap(cls):
        cls.name = name
        SCENARIOS[name] = cls()
        return cls

    return wrap


def discover() -> dict[str, Scenario]:
    """Import every module of this package; each registers its scenario."""
    global _discovered
    if not _discovered:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
        ordered = sorted(SCENARIOS.items())  # by name, whatever imported what first
        SCENARIOS.clear()
        SCENARIOS.update(ordered)
        _discovered = True
    return SCENARIOS


def get_scenario(name: str) -> Scenario:
    try:
        return discover()[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {sorted(SCENARIOS)}") from None


def settings_schemas() -> dict[str, dict]:
    """`benchmark.<name>` of every scenario as a JSON schema (its declared settings)."""
    return {name: s.settings_schema() for name, s in discover().items()}


def merge_settings_schemas(benchmark: dict | None) -> None:
    """Into the schema's `benchmark` block: every scenario's settings, and the scenario names
    that `benchmark.scenarios` accepts."""
    if not isinstance(benchmark, dict):
        return
    props = benchmark.setdefault("properties", {})
    schemas = settings_schemas()
    props.update({name: schema for name, schema in schemas.items() if name not in props})
    names = props.get("scenarios", {}).get("items")
    if isinstance(names, dict):
        names["enum"] = list(schemas)


def engine_capabilities(engine) -> set[str]:
    """What an engine (class or instance) can do, from what it implements: every engine runs
    one request (`generate`); one that overrides `run_requests` runs concurrent ones on a
    scheduler (`requests`); one with an `own_client_tool` has its own benchmark tool; one
    with `generation_memory` reaches a generation's last-token memory without decoding it
    token by token (`generation_memory`)."""
    from quantbench.engines.base import Engine

    cls = engine if isinstance(engine, type) else type(engine)
    caps = {"generate"}
    if cls.run_requests is not Engine.run_requests:
        caps.add("requests")
    if getattr(cls, "own_client_tool", None) is not None:
        caps.add("own_client")
    if callable(getattr(cls, "generation_memory", None)):
        caps.add("generation_memory")
    return caps


def unsupported_reason(engine, name: str) -> str | None:
    """Why `engine` cannot run scenario `name`, or None when it can."""
    missing = set(get_scenario(name).requires) - engine_capabilities(engine)
    if not missing:
        return None
    return f"engine {engine.name!r} lacks {sorted(missing)}, which scenario {name!r} needs"


def failed_rows(name: str, settings: dict, status: str, reason: str) -> list[dict]:
    return get_scenario(name).failed_rows(settings, status, reason)


def report_tables() -> list[tuple[Scenario, Table]]:
    return [(s, t) for s in discover().values() for t in s.tables]


def report_plots() -> list[tuple[Scenario, Plot]]:
    return [(s, p) for s in discover().values() for p in s.plots]


def report_files() -> list[tuple[str, str, str]]:
    """(file under the report directory, caption text, Snakemake report category) of every
    scenario's table and plot: the aggregate rule's outputs (rules/aggregate.smk)."""
    tables = [(f"{t.name}.md", t.caption, "Tables") for _, t in report_tables()]
    return tables + [(p.file, p.caption, "Plots") for _, p in report_plots()]


def write_captions(directory: str | Path) -> dict[str, str]:
    """Each report file's caption as `<directory>/<file>.rst` (Snakemake's report reads a
    caption from a file); file -> the caption's absolute path. Rewritten only when changed."""
    out = Path(directory).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for file, caption, _ in report_files():
        path = out / f"{file}.rst"
        if not path.exists() or path.read_text() != caption + "\n":
            path.write_text(caption + "\n")
        paths[file] = str(path)
    return paths
