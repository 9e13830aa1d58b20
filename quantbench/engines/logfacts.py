"""Start-up facts that an inference server prints in its log.

Every fact is a plain dict (JSON-ready)::

    {"value": 256800, "min": 256800, "max": 257664, "count": 8, "unit": "tokens",
     "method": "log: vllm 'GPU KV cache size: N tokens' (v1/core/kv_cache_utils.py)"}

Tensor-parallel workers each print their own line, so every figure keeps ``min``, ``max`` and
``count``. ``value`` is the *min* for capacities (the scheduler admits against the smallest
worker: vLLM shrinks every worker to the minimum block count) and the *max* for memory use and
durations (the slowest / fullest worker bounds the engine). Facts a log does not contain are
absent, never guessed. Derived figures say so in ``method``.

Formats were taken from the engines' sources (vLLM 0.9.1 lines in the seeds, vLLM 0.24.0 and
SGLang 0.5.9 source); tests/test_logfacts.py says which are checked on real lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime

__all__ = ["parse_log", "parse_sglang_log", "parse_vllm_log", "strip_ansi"]

# CSI / OSC escape sequences: vLLM colours its level names and prints a coloured logo.
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*(?:\x07|\x1b\\))")
_N = r"(\d[\d,]*(?:\.\d+)?)"  # a number, thousands separators allowed
_SECS = r"\s*s(?:ecs?|econds)?\b"  # "12.3 s", "12.3s", "12 secs", "12.3 seconds"


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _lines(text: str) -> list[str]:
    # tqdm bars rewrite one line with "\r"; treat each rewrite as its own line.
    return re.split(r"\r\n|\r|\n", strip_ansi(text))


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def _fact(
    values: list[float],
    unit: str,
    method: str,
    pick: Callable = max,
    integer: bool = False,
    **extra,
) -> dict:
    conv = int if integer else float
    fact = {
        "value": conv(pick(values)),
        "min": conv(min(values)),
        "max": conv(max(values)),
        "count": len(values),
        "unit": unit,
        "method": method,
    }
    fact.update(extra)
    return fact


def _collect(lines: Iterable[str], pattern: re.Pattern, group: int = 1) -> list[float]:
    out = []
    for line in lines:
        for m in pattern.finditer(line):
            if m.group(group) is not None:
                out.append(_num(m.group(group)))
    return out


# --- vLLM --------------------------------------------------------------------------------------

# "GPU KV cache size: 257,664 tokens"; the CPU build and newer releases say "CPU ..." and may
# put the concurrency on the same line, so the two are matched independently.
_V_KV_TOKENS = re.compile(r"\b([A-Z]{3}) KV cache size: " + _N + r" tokens")
_V_CONC = re.compile(r"Maximum concurrency for " + _N + r" tokens per request: " + _N + r"x")
_V_KV_GIB = re.compile(r"Available KV cache memory: " + _N + r" GiB")
# CPU worker (v1/worker/cpu_worker.py): "Explicitly set (4.0/62.7) GiB for KV cache on node 0."
_V_CPU_KV_GIB = re.compile(r"(?:Explicitly|Auto) set \(" + _N + r"/" + _N + r"\) GiB for KV cache")
# 0.9: "Model loading took 15.2683 GiB and 67.840160 seconds"; 0.24 adds "memory".
_V_MODEL_LOAD = re.compile(r"Model loading took " + _N + r" GiB(?: memory)? and " + _N + _SECS)
_V_WEIGHTS = re.compile(r"Loading weights took " + _N + _SECS)
_V_GRAPH = re.compile(r"Graph capturing finished in " + _N + _SECS + r"(?:, took " + _N + " GiB)?")
_V_COMPILE = re.compile(r"torch\.compile (?:takes|took) " + _N + _SECS + " in total")
_V_INIT = re.compile(
    r"init engine \(profile, create kv cache, warmup model\) took "
    + _N
    + _SECS
    + r"(?: \(compilation: "
    + _N
    + _SECS
    + ")?"
)
_V_VERSION = (
    (re.compile(r"Initializing a V1 LLM engine \(v([^)\s]+)\)"), "'Initializing a V1 LLM engine'"),
    (re.compile(r"vLLM (?:API )?server version ([\w.+-]+)"), "'vLLM server version'"),
    (re.compile(r"█\s+version\s+([\w.+-]+)"), "start-up logo"),
)


def parse_vllm_log(text: str) -> dict:
    lines = _lines(text)
    facts: dict = {"engine": "vllm"}

    kv = [(m.group(1), _num(m.group(2))) for ln in lines for m in _V_KV_TOKENS.finditer(ln)]
    if kv:
        dev = kv[0][0]
        facts["kv_cache_tokens"] = _fact(
            [n for _, n in kv],
            "tokens",
            f"log: vllm '{dev} KV cache size: N tokens' "
            "(v1/core/kv_cache_utils.py), one line per worker",
            pick=min,
            integer=True,
        )

    conc = [(_num(m.group(1)), _num(m.group(2))) for ln in lines for m in _V_CONC.finditer(ln)]
    if conc:
        facts["max_concurrency"] = _fact(
            [x for _, x in conc],
            "x",
            "log: vllm 'Maximum concurrency for L tokens per request: "
            "Xx' (v1/core/kv_cache_utils.py)",
            pick=min,
            tokens_per_request=int(max(t for t, _ in conc)),
        )

    gib = _collect(lines, _V_KV_GIB)
    if gib:
        facts["available_kv_cache_gib"] = _fact(
            gib,
            "GiB",
            "log: vllm 'Available KV cache memory: X GiB' (v1/worker/gpu_worker.py), "
            "one line per worker",
            pick=min,
        )
    elif gib := _collect(lines, _V_CPU_KV_GIB):
        facts["available_kv_cache_gib"] = _fact(
            gib,
            "GiB",
            "log: vllm CPU '(Explicitly|Auto) set (X/total) GiB for KV cache' "
            "(v1/worker/cpu_worker.py)",
            pick=min,
        )

    if weights := _collect(lines, _V_MODEL_LOAD, 1):
        facts["weights_gib"] = _fact(
            weights,
            "GiB",
            "log: vllm 'Model loading took X GiB' (gpu_model_runner.py), "
            "memory the worker gained while loading, per worker",
        )
        facts["model_load_s"] = _fact(
            _collect(lines, _V_MODEL_LOAD, 2),
            "s",
            "log: vllm 'Model loading took .. and T seconds' (gpu_model_runner.py)",
        )
    if secs := _collect(lines, _V_WEIGHTS):
        facts["weight_load_s"] = _fact(
            secs, "s", "log: vllm 'Loading weights took T seconds' (model_loader)"
        )
    if secs := _collect(lines, _V_GRAPH, 1):
        facts["cuda_graph_capture_s"] = _fact(
            secs,
            "s",
            "log: vllm 'Graph capturing finished in T secs' (gpu_model_runner.py), "
            "rounded to whole seconds by vLLM",
        )
        if gib := _collect(lines, _V_GRAPH, 2):
            facts["cuda_graph_gib"] = _fact(
                gib, "GiB", "log: vllm 'Graph capturing finished .., took X GiB'"
            )
    if secs := _collect(lines, _V_COMPILE):
        facts["torch_compile_s"] = _fact(
            secs, "s", "log: vllm 'torch.compile takes|took T s in total' (compilation/monitor.py)"
        )
    elif secs := _collect(lines, _V_INIT, 2):
        facts["torch_compile_s"] = _fact(
            secs, "s", "log: vllm 'init engine .. took .. (compilation: T s)' (v1/engine/core.py)"
        )
    if secs := _collect(lines, _V_INIT, 1):
        facts["engine_init_s"] = _fact(
            secs,
            "s",
            "log: vllm 'init engine (profile, create kv cache, warmup model) took T s' "
            "(v1/engine/core.py); excludes process start and API server start-up",
        )

    for pattern, where in _V_VERSION:
        if m := next((m for ln in lines if (m := pattern.search(ln))), None):
            facts["engine_version"] = {
                "value": m.group(1),
                "unit": "",
                "method": f"log: vllm {where}",
            }
            break
    return facts


# --- SGLang ------------------------------------------------------------------------------------

# mem_cache/memory_pool.py: "KV Cache is allocated. #tokens: N, K size: X GB, V size: Y GB"
# (or "KV size: Z GB" for MLA); SGLang's "GB" is 2**30 bytes (memory_pool.GB, utils).
_S_KV = re.compile(r"KV Cache is allocated\..*?#tokens: " + _N)
_S_KV_KV = re.compile(r"KV Cache is allocated\..*?\bK size: " + _N + r" GB, V size: " + _N + " GB")
_S_KV_ONE = re.compile(r"KV Cache is allocated\..*?\bKV size: " + _N + " GB")
# managers/scheduler.py, rank 0 only.
_S_MAX_TOTAL = re.compile(r"max_total_num_tokens=" + _N)
_S_CONTEXT = re.compile(r"max_total_num_tokens=.*?\bcontext_len=" + _N)
_S_RUNNING = re.compile(r"max_total_num_tokens=.*?\bmax_running_requests=" + _N)
# model_executor/model_runner.py; "elapsed=" exists since ~0.4.7, "dtype=" became a quant string.
_S_WEIGHTS = re.compile(r"Load weight end\..*?\bmem usage=" + _N + " GB")
_S_WEIGHTS_S = re.compile(r"Load weight end\..*?\belapsed=" + _N + _SECS)
# "Capture cuda graph end. Time elapsed: T s. mem usage=X GB. avail mem=Y GB." (cpu/npu alike);
# the piecewise and speculative-draft captures are separate phases and deliberately not matched.
_S_GRAPH = re.compile(
    r"Capture (?:cuda|cpu|npu) graph end\. Time elapsed: "
    + _N
    + _SECS
    + r"(?:\. mem usage="
    + _N
    + " GB)?"
)
_S_READY = "The server is fired up and ready to roll!"
# utils/common.py configure_logger: "[%Y-%m-%d %H:%M:%S(.mmm)?( TP0 ...)?] message"
_S_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)[^\]]*\]")


def _stamp(line: str) -> datetime | None:
    m = _S_STAMP.match(line.strip())
    return datetime.fromisoformat(m.group(1)) if m else None


def parse_sglang_log(text: str) -> dict:
    lines = _lines(text)
    facts: dict = {"engine": "sglang"}

    max_total = _collect(lines, _S_MAX_TOTAL)
    if tokens := _collect(lines, _S_KV):
        facts["kv_cache_tokens"] = _fact(
            tokens,
            "tokens",
            "log: sglang 'KV Cache is allocated. #tokens: N' "
            "(mem_cache/memory_pool.py), one line per rank",
            pick=min,
            integer=True,
        )
    elif max_total:
        facts["kv_cache_tokens"] = _fact(
            max_total,
            "tokens",
            "log: sglang scheduler 'max_total_num_tokens=N'",
            pick=min,
            integer=True,
        )
    if max_total:
        facts["max_total_num_tokens"] = _fact(
            max_total,
            "tokens",
            "log: sglang scheduler 'max_total_num_tokens=N' (managers/scheduler.py)",
            pick=min,
            integer=True,
        )
        if running := _collect(lines, _S_RUNNING):
            facts["max_running_requests"] = _fact(
                running,
                "requests",
                "log: sglang scheduler 'max_running_requests=N'",
                pick=min,
                integer=True,
            )
        if context := _collect(lines, _S_CONTEXT):
            ctx = int(context[0])
            # SGLang prints no concurrency figure; this is vLLM's definition applied to it.
            facts["max_concurrency"] = _fact(
                [t / ctx for t in max_total],
                "x",
                "derived: max_total_num_tokens / context_len "
                "(vLLM's definition; SGLang prints none)",
                pick=min,
                tokens_per_request=ctx,
            )

    kv_gib = [_num(m.group(1)) + _num(m.group(2)) for ln in lines for m in _S_KV_KV.finditer(ln)]
    kv_gib += _collect(lines, _S_KV_ONE)
    if kv_gib:
        facts["kv_cache_gib"] = _fact(
            kv_gib,
            "GiB",
            "log: sglang 'KV Cache is allocated .. K size + V size' (SGLang's GB = 2**30 bytes)",
            pick=min,
        )

    if gib := _collect(lines, _S_WEIGHTS):
        facts["weights_gib"] = _fact(
            gib,
            "GiB",
            "log: sglang 'Load weight end. .. mem usage=X GB' (model_runner.py), "
            "drop in free device memory while loading; SGLang's GB = 2**30 bytes",
        )
    if secs := _collect(lines, _S_WEIGHTS_S):
        facts["weight_load_s"] = _fact(
            secs, "s", "log: sglang 'Load weight end. elapsed=T s' (model_runner.py)"
        )
    if secs := _collect(lines, _S_GRAPH, 1):
        facts["cuda_graph_capture_s"] = _fact(
            secs, "s", "log: sglang 'Capture cuda graph end. Time elapsed: T s' (model_runner.py)"
        )
        if gib := _collect(lines, _S_GRAPH, 2):
            facts["cuda_graph_gib"] = _fact(
                gib, "GiB", "log: sglang 'Capture cuda graph end .. mem usage=X GB'"
            )

    stamps = [(s, ln) for ln in lines if (s := _stamp(ln)) is not None]
    ready = [s for s, ln in stamps if _S_READY in ln]
    if stamps and ready:
        facts["engine_init_s"] = _fact(
            [(ready[0] - stamps[0][0]).total_seconds()],
            "s",
            "derived: log timestamp of 'The server is fired up and ready to roll!' minus the "
            "first timestamped line (1 s resolution unless SGLANG_LOG_MS)",
        )
    # SGLang prints no version at start-up (it is in GET /get_server_info); nothing to parse.
    return facts


_PARSERS = {"vllm": parse_vllm_log, "sglang": parse_sglang_log}


def parse_log(engine: str, text: str) -> dict:
    """Facts from a start-up log of ``engine`` ("vllm" or "sglang")."""
    parser = _PARSERS.get(engine.lower())
    if parser is None:
        raise ValueError(f"no log parser for engine {engine!r}; have {sorted(_PARSERS)}")
    return parser(text)
