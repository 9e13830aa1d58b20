"""An already running OpenAI-compatible server, given its base URL and model name: nothing is
launched or stopped, and no start-up log is read."""

from __future__ import annotations

import contextlib
import json
import urllib.request

from quantbench.engines import register_engine
from quantbench.engines.served import ServedEngine
from quantbench.engines.server import _OPENER
from quantbench.status import MemorySource


def check_endpoint(base_url: str, model: str, timeout_s: float = 10.0) -> None:
    """Before measuring someone else's server: it answers GET /v1/models and serves `model`;
    otherwise the cell fails with what to fix (nothing is measured against a dead endpoint)."""
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

    description = "an already running OpenAI-compatible server; nothing is launched"
    environment = ("3.11", ("eval",), "An external OpenAI-compatible server: client and lm-eval.")
    packages = ()
    any_format = "external"  # it serves whatever it was started with: nothing to check here
    settings = {
        "base_url": {"type": "string", "pattern": "^https?://"},
        "model": {"type": "string", "description": "the served model name"},
        "request_timeout_s": {"type": "number", "minimum": 1, "default": 1800},
    }
    required_settings = ("base_url", "model")

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

    @contextlib.contextmanager
    def serve(self, launch: dict, log_path: str):
        self.model_name = launch["served_model_name"]
        self.server = _Endpoint(launch["base_url"])
        check_endpoint(self.server.base_url, self.model_name)
        yield self.server
        self.server = None

    def startup_facts(self) -> dict:
        return {"base_url": {"value": self.server.base_url, "method": "config (not launched)"}}

    def measure_memory(self, tokens: int = 0) -> dict:
        return {"peak_mem_mb": float("nan"), "mem_method": MemorySource.NOT_MEASURED_EXTERNAL}
