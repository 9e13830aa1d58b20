"""Session-wide test settings."""

import os

import pytest

from quantbench.trained import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def trained_model_cache(tmp_path_factory):
    """One training of the `trained` model source per test session: every workflow a test runs
    (the Snakemake subprocesses inherit the variable) copies it from here after the first."""
    if CACHE_ENV in os.environ:
        yield os.environ[CACHE_ENV]
        return
    path = str(tmp_path_factory.mktemp("trained-cache"))
    os.environ[CACHE_ENV] = path
    yield path
    os.environ.pop(CACHE_ENV, None)


@pytest.fixture(scope="session", autouse=True)
def device_lock_dir(tmp_path_factory):
    """The per-device measurement lock (quantbench/guard.py) lives in this session's own
    directory: a test session's workflows still take turns on the CPU, but two test sessions
    on one machine (a developer's and CI's) do not fail each other's cells as 'busy'."""
    if "QUANTBENCH_LOCK_DIR" in os.environ:
        yield os.environ["QUANTBENCH_LOCK_DIR"]
        return
    path = str(tmp_path_factory.mktemp("device-locks"))
    os.environ["QUANTBENCH_LOCK_DIR"] = path
    yield path
    os.environ.pop("QUANTBENCH_LOCK_DIR", None)
