"""Reading config files as Snakemake does (JSON, else YAML) but stricter: a key given twice in
one mapping is refused (YAML would keep the last), and a syntax error names the file and line.
Several files merge as `snakemake --configfile A B` merges them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from quantbench.plan import ConfigError


class _DuplicateKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    # Only the keys written in this mapping count: a key it takes from a `<<: *anchor` merge and
    # sets again is YAML's documented override, not a duplicate.
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
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
    loader.flatten_mapping(node)
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
