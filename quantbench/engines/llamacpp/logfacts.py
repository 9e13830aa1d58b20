"""Start-up facts of llama-server's log (see quantbench/engines/logfacts.py for their form), from
the lines llama.cpp prints while loading (src/llama-model.cpp, src/llama-kv-cache.cpp,
tools/server); tests/test_llamacpp.py checks them on a real log."""

from __future__ import annotations

import re

from quantbench.engines.logfacts import _N, _collect, _fact, _lines

# "load_tensors:   CPU_Mapped model buffer size =    10.24 MiB", one line per buffer (device).
_WEIGHTS = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s*" + _N + r" MiB")
# "llama_kv_cache:        CPU KV buffer size =    16.00 MiB"
_KV_BUFFER = re.compile(r"llama_kv_cache:\s+\S+ KV buffer size =\s*" + _N + r" MiB")
# "llama_kv_cache: size =   16.00 MiB (  1024 cells,   2 layers,  1/1 seqs), K (f16): ..."
# "... (N cells, L layers, S/T seqs)": N cells in each of T streams (one per slot unless the
# KV cache is unified, then T = 1), the size all of them.
_KV = re.compile(
    r"llama_kv_cache: size =\s*" + _N + r" MiB \(\s*" + _N + r" cells,.*?(\d+)/\s*(\d+) seqs"
)
_N_CTX = re.compile(r"llama_context: n_ctx\s*=\s*" + _N)
# "srv    load_model: initializing, n_slots = 4, n_ctx_slot = 1024, kv_unified = 'true'"
_SLOTS = re.compile(r"load_model: initializing(?: slots)?, n_slots = " + _N)
# "common_params_print_info: build 0 (unknown) with GNU 12.2.0 for Linux x86_64"
_VERSION = re.compile(r"\bbuild (\d+ \([^)]*\))")


def parse_llamacpp_log(text: str) -> dict:
    lines = _lines(text)
    facts: dict = {"engine": "llamacpp"}
    buffers = [(m.group(1), float(m.group(2).replace(",", ""))) for ln in lines
               for m in _WEIGHTS.finditer(ln)]
    if buffers:
        facts["weights_gib"] = _fact(
            [sum(mib for _, mib in buffers) / 1024],
            "GiB",
            "log: llama.cpp 'load_tensors: <buffer> model buffer size = X MiB', summed over "
            f"buffers ({', '.join(b for b, _ in buffers)})",
        )
    if kv := [m.groups() for ln in lines for m in _KV.finditer(ln)]:
        facts["kv_cache_gib"] = _fact(
            [float(mib.replace(",", "")) / 1024 for mib, *_ in kv],
            "GiB",
            "log: llama.cpp 'llama_kv_cache: size = X MiB (N cells, ...)'",
            pick=min,
        )
        facts["kv_cache_tokens"] = _fact(
            [float(cells.replace(",", "")) * int(streams) for _, cells, _, streams in kv],
            "tokens",
            "log: llama.cpp 'llama_kv_cache: size = .. (N cells, .., S/T seqs)': N x T, one "
            "cell a token, T streams (one per slot unless unified)",
            pick=min,
            integer=True,
        )
    elif mib := _collect(lines, _KV_BUFFER):
        facts["kv_cache_gib"] = _fact(
            [sum(mib) / 1024], "GiB", "log: llama.cpp 'llama_kv_cache: <dev> KV buffer size'"
        )
    if n_ctx := _collect(lines, _N_CTX):
        facts["context_tokens"] = _fact(
            n_ctx, "tokens", "log: llama.cpp 'llama_context: n_ctx = N'", pick=min, integer=True
        )
    if slots := _collect(lines, _SLOTS):
        facts["max_running_requests"] = _fact(
            slots, "requests", "log: llama-server 'initializing, n_slots = N' (parallel slots)",
            pick=min, integer=True,
        )
    if m := next((m for ln in lines if (m := _VERSION.search(ln))), None):
        facts["engine_version"] = {
            "value": f"llama.cpp build {m.group(1)}",
            "unit": "",
            "method": "log: llama-server 'build N (commit)' (0 (unknown): built from a tree "
            "without git, e.g. the llama-cpp-python sdist's)",
        }
    return facts
