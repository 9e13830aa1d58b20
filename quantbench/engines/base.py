"""What every engine is: a lifetime (a model loaded in this process, or a server started and
stopped), requests and their records, start-up facts, memory, and capabilities declared on the
class, which the planner, the compatibility table and the config schema read without running it.

The benchmark scenarios (quantbench.scenarios) use `generate`, `run_requests`, `measure_memory`,
`release`, `name` and `max_positions`; the jobs (quantbench.jobs) `launch_spec`,
`session`, `version`, `device` and `in_process`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
from abc import ABC, abstractmethod
from typing import ClassVar

from quantbench.status import MemorySource

POSITIVE_INT = {"type": "integer", "minimum": 1}


class Engine(ABC):
    """One engine kind. The scenarios it runs follow from what it implements
    (quantbench.scenarios.engine_capabilities): every engine `generate`s; overriding
    `run_requests` (a server's scheduler) adds serving, batch and sweep; an `own_client_tool`,
    engine_client. Subclasses declare:

    - `compat`: checkpoint format -> the engine's kernels for it, the default first (the
      rows of quantbench.compat); `any_format`: a kernel name for every format (an external
      server, whose checkpoint is its own business);
    - `weightless`: it can fill a weightless layout with random tensors (a dummy model);
      `weightless_formats`: the layouts it fills, where not every one;
    - `settings`: its config keys as JSON-schema properties (`required_settings`, and a
      `description` for the config reference), checked at parse time;
    - `packages`: distributions whose version is the engine's version;
    - `environment`: its conda environment's recipe (envs/<engine>.yaml, tools/gen_envs.py).
    """

    name: ClassVar[str] = ""  # set by @register_engine
    description: ClassVar[str] = ""
    in_process: ClassVar[bool] = False
    compat: ClassVar[dict[str, tuple[str, ...]]] = {}
    any_format: ClassVar[str | None] = None
    weightless: ClassVar[bool] = False
    weightless_formats: ClassVar[tuple[str, ...] | None] = None  # None: every layout
    packages: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[dict[str, dict]] = {}
    required_settings: ClassVar[tuple[str, ...]] = ()
    # envs/<engine>.yaml, which tools/gen_envs.py writes: (python, pyproject extras, comment,
    # conda packages); None where a shared environment serves it (transformers).
    environment: ClassVar[tuple | None] = None

    def __init__(self, settings: dict):
        self.settings = dict(settings)
        self.device: str | None = None
        self.max_positions: int | None = None  # the model's context, where the engine knows it

    # -- declared ---------------------------------------------------------------------------

    @classmethod
    def settings_schema(cls) -> dict:
        schema = {
            "type": "object",
            "additionalProperties": False,
            "properties": dict(cls.settings),
        }
        if cls.description:
            schema["description"] = cls.description
        if cls.required_settings:
            schema["required"] = list(cls.required_settings)
        return schema

    @classmethod
    def version(cls) -> str:
        for dist in cls.packages:
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        return "not installed"

    # -- the lifetime -----------------------------------------------------------------------

    @abstractmethod
    def launch_spec(self, checkpoint: str, has_weights: bool, kernel: str, name: str) -> dict:
        """How this engine runs the cell (JSON-ready): the serve job writes it, the benchmark
        and evaluate jobs start the engine from it."""

    @abstractmethod
    def session(self, launch: dict, log_path: str):
        """A context manager: the model loaded or the server up for the body, yielding the
        start-up facts; everything freed or stopped after."""

    @abstractmethod
    def startup_facts(self) -> dict:
        """Facts of the loaded engine, each {"value", "unit", "method"}."""

    # -- requests ---------------------------------------------------------------------------

    @abstractmethod
    def generate(self, prompt_ids: list[int], output_len: int):
        """One batch-1 greedy request of exactly `output_len` tokens: (RequestRecord, memory)."""

    def run_requests(self, prompts, output_len: int, **load) -> list:
        raise NotImplementedError(f"engine {self.name!r} runs one request at a time")

    def measure_memory(self, tokens: int = 0) -> dict:
        """{"peak_mem_mb", "mem_method"} for a request of `tokens` tokens (an in-process engine
        measures it inside `generate` instead)."""
        return {"peak_mem_mb": float("nan"), "mem_method": MemorySource.NOT_MEASURED}

    def release(self) -> None:  # noqa: B027 - nothing to free unless the engine says so
        """Free what a failed request left behind (after an out-of-memory error)."""

    def close(self) -> None:  # noqa: B027
        """Free the model (in-process engines)."""


class InProcessEngine(Engine):
    """An engine that loads the model into this process (`load`)."""

    in_process = True

    @abstractmethod
    def load(self, checkpoint: str, has_weights: bool, seed: int = 0) -> float:
        """Load the model; the seconds spent."""

    @contextlib.contextmanager
    def session(self, launch: dict, log_path: str):
        start = time.perf_counter()
        self.load(launch["checkpoint"], launch["weights"] == "checkpoint")
        try:
            yield {
                "startup_s": {
                    "value": time.perf_counter() - start,
                    "unit": "s",
                    "method": "in-process model load",
                },
                **self.startup_facts(),
            }
        finally:
            self.close()
