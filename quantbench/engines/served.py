"""An engine behind an OpenAI-compatible server: started by the benchmark job (one server per
model x quantization x engine, every scenario in sequence against it), measured through the
project's streaming client, stopped with its whole process group. An engine package gives the
server's command line (`build_command`), what its start-up log says (`parse_log`), its own
benchmark client (`own_client_tool`) and how its prefix cache is switched and reported."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import ClassVar

from quantbench import gpu
from quantbench.engines.base import POSITIVE_INT, Engine
from quantbench.engines.launch import LaunchSpec
from quantbench.engines.server import ManagedServer
from quantbench.status import MemorySource

# Settings of a served engine that are not server flags.
RUNNER_KEYS = frozenset(
    {
        "device",
        "ready_timeout_s",
        "executable",
        "request_timeout_s",
        "prefix_caching",
        "compile_cache",
    }
)
# Kernels that need no --quantization flag: the engine reads the checkpoint's own config.
IMPLICIT_KERNELS = {"none", "compressed-tensors"}

# Config keys every launched server takes (JSON schema), beside its own flags.
SERVED_SETTINGS = {
    "device": {"type": "string", "enum": ["auto", "cpu", "cuda"], "default": "auto"},
    "executable": {"type": "string", "description": "the server's program (see the engine)"},
    "ready_timeout_s": {"type": "number", "minimum": 1, "default": 900},
    "request_timeout_s": {"type": "number", "minimum": 1, "default": 1800},
    "prefix_caching": {
        "type": "boolean",
        "default": False,
        "description": "the engine's prefix cache; off, every measured request computes its "
        "whole prompt. Cached tokens are reported either way",
    },
    "compile_cache": {
        "type": "string",
        "description": "a directory for the engine's compiled kernels (JIT, Triton, "
        "torch.compile, DeepGEMM), kept between cells and, on a shared filesystem, between "
        "nodes: every server after the first starts warm. Unset: the libraries' own (~/.cache)",
    },
    "extra_args": {"type": "array", "items": {"type": "string"}},
    "env": {
        "description": "environment variables for the server process",
        "type": "object",
        "additionalProperties": {"type": "string"},
    },
}
# The flags vLLM and SGLang share (and their schema), apart from the runner's keys.
COMMON_FLAG_SETTINGS = {
    "dtype": {"type": "string", "enum": ["auto", "bfloat16", "float16", "half", "float32"]},
    "max_model_len": POSITIVE_INT,
    "tensor_parallel_size": POSITIVE_INT,
    "expert_parallel_size": POSITIVE_INT,
    "load_format": {"type": "string", "enum": ["auto", "dummy", "safetensors", "pt", "gguf"]},
    "chunked_prefill": {"type": "boolean"},
    "skip_tokenizer_init": {"type": "boolean"},
    "tokenizer": {"type": "string"},
}


def _count_files(directory: str | None) -> int:
    """Files under `directory` (created if missing): how warm a compile cache is."""
    if not directory:
        return 0
    Path(directory).mkdir(parents=True, exist_ok=True)
    return sum(1 for p in Path(directory).rglob("*") if p.is_file())


class ServedEngine(Engine):
    in_process = False
    settings: ClassVar[dict] = SERVED_SETTINGS
    # The engine's own benchmark tool (quantbench.engines.own_client.Tool), or None.
    own_client_tool: ClassVar = None
    # How the prefix cache is switched off / on, and where each request's cached tokens show.
    cache_flags: ClassVar[tuple[str, str]] = ("", "")
    cache_proof: ClassVar[str] = "usage.prompt_tokens_details.cached_tokens of every request"
    # A cache report that leaves prompt_tokens_details out when no token was cached (SGLang).
    cache_report_omits_zero: ClassVar[bool] = False
    # Where the engine's libraries keep what they compile: variable -> subdirectory of the
    # `compile_cache` setting (a variable the config's `env` sets is left as it is).
    compile_cache_env: ClassVar[dict[str, str]] = {}

    def __init__(self, settings: dict):
        super().__init__(settings)
        device = self.settings.get("device", "auto")
        self.device = ("cuda" if gpu.has_gpu() else "cpu") if device == "auto" else device
        self.server: ManagedServer | None = None
        self.model_name = ""
        self.facts: dict = {}

    # -- what the engine package gives --------------------------------------------------------

    def build_command(self, model_path: str, served_name: str, flags: dict) -> LaunchSpec:
        """The server's command line from the config's flags (plus `prefix_caching`,
        `cache_report`, `quantization`, `load_format`, `tokenizer` set here)."""
        raise NotImplementedError(f"engine {self.name!r} launches no server")

    @classmethod
    def parse_log(cls, text: str) -> dict:
        """Start-up facts from the server's log (none by default)."""
        return {"engine": cls.name}

    def model_path(self, checkpoint: str, flags: dict) -> str:
        """What the server loads: the checkpoint directory, or the .gguf file in it (with the
        tokenizer beside it)."""
        ggufs = sorted(Path(checkpoint).glob("*.gguf"))
        if not ggufs:
            return checkpoint
        flags.setdefault("tokenizer", checkpoint)
        return str(ggufs[0])

    @classmethod
    def cache_state(cls, prefix_caching: bool) -> dict:
        """How the prefix cache is set for the measurements, for every result's provenance."""
        return {
            "prefix_caching": prefix_caching,
            "how": cls.cache_flags[prefix_caching],
            "proof": cls.cache_proof,
        }

    # -- the lifetime -------------------------------------------------------------------------

    def launch_spec(self, checkpoint: str, has_weights: bool, kernel: str, name: str) -> dict:
        flags = {k: v for k, v in self.settings.items() if k not in RUNNER_KEYS}
        # Measurements are cache-free unless the config turns the prefix cache back on; the
        # engine reports each request's cached prompt tokens either way (the proof).
        flags["prefix_caching"] = bool(self.settings.get("prefix_caching", False))
        flags["cache_report"] = True
        if kernel not in IMPLICIT_KERNELS:
            flags.setdefault("quantization", kernel)
        if not has_weights:  # a dummy model: the engine fills random weights
            flags["load_format"] = "dummy"
        spec = self.build_command(self.model_path(checkpoint, flags), name, flags)
        cache = self.settings.get("compile_cache")
        if cache:
            cache = str(Path(cache).resolve())
            for var, sub in self.compile_cache_env.items():
                spec.env.setdefault(var, str(Path(cache) / sub))
        return {
            "engine": self.name,
            "in_process": False,
            "checkpoint": checkpoint,
            "weights": "checkpoint" if has_weights else "random (--load-format dummy)",
            "served_model_name": name,
            "device": self.device,
            "cmd": spec.cmd,
            "env": spec.env,
            "ready_timeout_s": self.settings.get("ready_timeout_s", 900),
            "prefix_cache": self.cache_state(flags["prefix_caching"]),
            "compile_cache": cache or None,
        }

    @contextlib.contextmanager
    def serve(self, launch: dict, log_path: str):
        """The server, up and healthy, for the body; its whole process group stopped after."""
        self.model_name = launch["served_model_name"]
        self.checkpoint = launch.get("checkpoint")  # the tokenizer for the engine's own client
        self.executable = launch["cmd"][0]  # the server's program, or the Python that runs it
        self.server = ManagedServer(
            launch["cmd"],
            env=launch["env"],
            log_path=log_path,
            ready_timeout_s=launch["ready_timeout_s"],
        )
        self.facts = {}
        self.compile_cache = launch.get("compile_cache")
        self.compile_cache_files = _count_files(self.compile_cache)
        with self.server:
            yield self.server
        self.server = None

    @contextlib.contextmanager
    def session(self, launch: dict, log_path: str):
        with self.serve(launch, log_path):
            yield self.startup_facts()

    def startup_facts(self) -> dict:
        """KV-cache capacity, weight memory, timings from the start-up log, each with its method;
        the server processes' own GPU memory (NVML, per process) and, named so, the device's."""
        facts = self.parse_log(self.server.log_text())
        facts["startup_s"] = {
            "value": self.server.startup_s,
            "unit": "s",
            "method": "spawn to first healthy /health answer",
        }
        process = gpu.process_memory_mb(gpu.group_pids(self.server.pgid))
        if process is not None:
            facts["process_gpu_memory_mb"] = {
                "value": process,
                "unit": "MB",
                "method": "NVML per-process used GPU memory of the server's process group",
            }
        if self.compile_cache:
            facts["compile_cache_files"] = {
                "value": self.compile_cache_files,
                "unit": "files",
                "method": f"files under {self.compile_cache} before the server started "
                "(0: a cold start that compiled its kernels)",
            }
        device = gpu.device_memory_used_mb()
        if device is not None:
            facts["device_gpu_memory_used_mb"] = {
                "value": device,
                "unit": "MB",
                "method": "NVML device-wide memory used (every process on the GPU)",
            }
        self.facts = facts
        return facts

    def measure_memory(self, tokens: int = 0) -> dict:
        """The memory a request of ``tokens`` (prompt + generated, all of a batch) holds: the
        weights plus the KV cache of its tokens, both as the engine accounts them (start-up
        log: weights GiB, KV pool GiB / tokens). A server reserves its whole KV pool whatever
        the format, so its process memory cannot tell BF16 from FP8 or AWQ; this can. Without
        those log facts (a CPU build): the server processes' resident memory."""
        facts = self.facts
        weights = (facts.get("weights_gib") or {}).get("value")
        kv_gib = (facts.get("kv_cache_gib") or facts.get("available_kv_cache_gib") or {}).get(
            "value"
        )
        kv_tokens = (facts.get("kv_cache_tokens") or {}).get("value")
        if weights is not None and kv_gib and kv_tokens:
            return {
                "peak_mem_mb": (weights + kv_gib * tokens / kv_tokens) * 1024,
                "mem_method": MemorySource.ENGINE_LOG_KV,
            }
        if self.server is not None and self.server.pgid:
            rss = gpu.rss_mb(gpu.group_pids(self.server.pgid))
            return {"peak_mem_mb": rss, "mem_method": MemorySource.SERVER_RSS}
        return {"peak_mem_mb": float("nan"), "mem_method": MemorySource.NOT_MEASURED}

    # -- requests -----------------------------------------------------------------------------

    def run_requests(self, prompts, output_len: int, **load) -> list:
        """Stream `prompts` (token-id lists) through the client; exactly `output_len` tokens."""
        from quantbench.client.stream import run_load_sync

        records = run_load_sync(
            self.server.base_url,
            self.model_name,
            prompts,
            output_len,
            timeout_s=self.settings.get("request_timeout_s", 1800),
            expected_prompt_tokens=[len(p) for p in prompts],
            **load,
        )
        if self.cache_report_omits_zero:
            for rec in records:
                if rec.usage_seen and rec.cached_tokens is None:
                    rec.cached_tokens = 0
        return records

    def own_client(self, workload) -> dict:
        """The engine's own benchmark tool on this server (scenario `engine_client`)."""
        from quantbench.engines.own_client import run_own_client

        work = Path(self.server.log_path).parent.resolve()  # the tool runs there
        tokenizer = str(Path(self.checkpoint).resolve())
        # The server's own executable: the tool comes from the engine's environment.
        return run_own_client(
            self.name,
            self.executable,
            self.server.base_url,
            self.model_name,
            tokenizer,
            workload,
            work,
        )

    def generate(self, prompt_ids: list[int], output_len: int):
        (record,) = self.run_requests([prompt_ids], output_len, concurrency=1)
        if record.error:
            raise RuntimeError(f"request failed: {record.error}")
        return record, self.measure_memory(len(prompt_ids) + output_len)
