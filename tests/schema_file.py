"""The config schema as the workflow checks it, as a file for `snakemake.utils.validate`: the
schema file plus each engine's declared settings (quantbench.config_check.load_schema)."""

import json
import tempfile
from functools import cache
from pathlib import Path

from quantbench.config_check import load_schema


@cache
def full_schema_file() -> str:
    path = Path(tempfile.mkdtemp(prefix="qb-schema-")) / "config.schema.json"
    path.write_text(json.dumps(load_schema()))
    return str(path)
