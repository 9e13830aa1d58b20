"""`llama-server`, llama.cpp's OpenAI-compatible server, built from the same llama.cpp tree the
GGUF quantization method uses (the vendored copy in the llama-cpp-python sdist, downloaded once
into the cache: quantbench.quant.gguf_method.llama_cpp_tree), in a build directory of its own
beside that method's `llama-quantize` build. About 10 minutes on 2 cores, once per cache.

Where the binary comes from, first found: the engine's `executable` setting,
QUANTBENCH_LLAMA_SERVER, `llama-server` on PATH, the cached build (built now if missing).

    python -m quantbench.engines.llamacpp.build   # build it (CI does, ahead of the tests)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def cached_server() -> Path:
    """Where the cached build's binary is (whether built or not)."""
    from quantbench.quant.gguf_method import LLAMA_CPP_PYTHON, cache_dir

    return cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON}" / "build-server" / "bin" / "llama-server"


def find_server() -> Path | None:
    given = os.environ.get("QUANTBENCH_LLAMA_SERVER") or shutil.which("llama-server")
    if given:
        return Path(given)
    exe = cached_server()
    return exe if exe.exists() else None


def build_server() -> tuple[Path, float]:
    """The `llama-server` binary and the seconds spent building it now (0 if it existed): the
    server and what it links; no web UI, HTTPS or downloads."""
    from quantbench.quant.gguf_method import build_llama_tool, llama_cpp_tree

    found = find_server()
    if found:
        return found, 0.0
    on = ("BUILD_COMMON", "BUILD_TOOLS", "BUILD_SERVER")
    off = ("BUILD_TESTS", "BUILD_EXAMPLES", "BUILD_APP", "OPENSSL", "CURL")
    off += ("BUILD_UI", "USE_PREBUILT_UI")
    return build_llama_tool(llama_cpp_tree(), "build-server", "llama-server", on=on, off=off)


if __name__ == "__main__":
    exe, seconds = build_server()
    print(f"{exe} (built in {seconds:.0f} s)" if seconds else str(exe), file=sys.stderr)
    print(exe)
