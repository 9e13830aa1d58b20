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
