"""Start-up facts of vllm's log (see quantbench/engines/logfacts.py for their form). Formats
were taken from vLLM 0.9.1 lines in the seeds and vLLM 0.24.0 source;
tests/test_logfacts.py says which are checked on real lines."""

from __future__ import annotations

import re

from quantbench.engines.logfacts import _N, _SECS, _collect, _fact, _lines, _num

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


