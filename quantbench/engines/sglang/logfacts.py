"""Start-up facts of sglang's log (see quantbench/engines/logfacts.py for their form). Formats
were taken from SGLang 0.5.9 source;
tests/test_logfacts.py says which are checked on real lines."""

from __future__ import annotations

import re
from datetime import datetime

from quantbench.engines.logfacts import _N, _SECS, _collect, _fact, _lines, _num

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


