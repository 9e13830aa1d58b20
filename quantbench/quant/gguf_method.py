"""GGUF through llama.cpp's own tools: `convert_hf_to_gguf.py` writes F16/BF16/Q8_0 directly;
other types (Q4_K_M, Q5_K_M, Q6_K, Q4_0, ...) are a BF16 GGUF re-quantized by `llama-quantize`.

Where the tools come from (Debian has no llama.cpp package): the PyPI sdist of
`llama-cpp-python` vendors llama.cpp's tree (converter, gguf-py, quantize sources). It is
downloaded with pip once into a cache, and `llama-quantize` is built from it with cmake only
when a type needs it (about 6 minutes on 2 cores, once per cache). Overrides:
QUANTBENCH_LLAMA_CPP (a llama.cpp checkout), QUANTBENCH_LLAMA_QUANTIZE (a built binary, or
`llama-quantize` on PATH), QUANTBENCH_CACHE (the cache directory, default ~/.cache/quantbench).

The checkpoint directory holds `model-<TYPE>.gguf` plus the source's tokenizer files and
config.json: the GGUF is self-contained for llama.cpp, vLLM and SGLang; the tokenizer files serve
clients that tokenize, and config.json carries what Transformers' GGUF reader misses (it has no
`attention.key_length -> head_dim` mapping for qwen3 and assumes 128).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from quantbench.quant import QuantEnv, QuantMethod, ensure_weights, register_quant_method

LLAMA_CPP_PYTHON = "0.3.36"  # its sdist's vendor/llama.cpp is the tree used
# Types convert_hf_to_gguf.py writes itself (no compiled tool needed).
CONVERT_TYPES = {"F16": "f16", "BF16": "bf16", "Q8_0": "q8_0"}
# type -> (nominal weight bits, block size): llama.cpp's block layouts. K-quants pack 32- (16-
# for Q6_K) weight blocks into 256-weight super-blocks; _M mixes in higher-bit tensors.
TYPE_FACTS = {
    "F16": (16, None),
    "BF16": (16, None),
    "Q8_0": (8, 32),
    "Q6_K": (6, 16),
    "Q5_K_M": (5, 32),
    "Q5_K_S": (5, 32),
    "Q5_0": (5, 32),
    "Q4_K_M": (4, 32),
    "Q4_K_S": (4, 32),
    "Q4_0": (4, 32),
    "Q3_K_M": (3, 16),
    "Q2_K": (2, 16),
}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
CONVERT_RUNNER = Path(__file__).with_name("gguf_convert.py")  # runs as a file: no package import


def cache_dir() -> Path:
    return Path(os.environ.get("QUANTBENCH_CACHE", Path.home() / ".cache" / "quantbench"))


@contextlib.contextmanager
def _locked(path: Path):
    """Parallel GGUF jobs share one download and one build."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stdout, stderr=sys.stderr, **kwargs)


def llama_cpp_tree() -> Path:
    """A llama.cpp source tree: QUANTBENCH_LLAMA_CPP, or the sdist's vendored copy (cached)."""
    if os.environ.get("QUANTBENCH_LLAMA_CPP"):
        return Path(os.environ["QUANTBENCH_LLAMA_CPP"])
    tree = cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON}"
    with _locked(cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON}.lock"):
        if (tree / "convert_hf_to_gguf.py").exists():
            return tree
        with tempfile.TemporaryDirectory() as tmp:
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
            _run([*pip, "-d", tmp, f"llama-cpp-python=={LLAMA_CPP_PYTHON}"])
            prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
            partial = tree.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            with tarfile.open(next(Path(tmp).glob("*.tar.gz"))) as tar:
                members = []
                for m in tar.getmembers():
                    if m.name.startswith(prefix):
                        m.name = m.name[len(prefix) :]
                        members.append(m)
                tar.extractall(partial, members=members, filter="data")
            partial.rename(tree)
    return tree


def build_llama_tool(
    tree: Path, build_dir: str, target: str, on: tuple = (), off: tuple = ()
) -> tuple[Path, float]:
    """Build one llama.cpp tool (`target`) from `tree` into its own `build_dir`, once per cache
    (a lock keeps two jobs from building it at the same time): the binary and the seconds spent
    building it now (0 if it existed). Portable CPU code (GGML_NATIVE=OFF) so a shared cache
    works on every node; `on` / `off` name the LLAMA_* options to set."""
    build = tree / build_dir
    exe = build / "bin" / target
    with _locked(cache_dir() / f"{target}-{tree.name}.lock"):
        if exe.exists():
            return exe, 0.0
        start = time.perf_counter()
        flags = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DBUILD_SHARED_LIBS=OFF"]
        flags += [f"-DLLAMA_{x}=ON" for x in on] + [f"-DLLAMA_{x}=OFF" for x in off]
        _run(["cmake", "-S", str(tree), "-B", str(build), *flags])
        jobs = str(os.cpu_count() or 1)
        _run(["cmake", "--build", str(build), "--target", target, "-j", jobs])
        return exe, time.perf_counter() - start


def llama_quantize(tree: Path) -> tuple[Path, float]:
    """The `llama-quantize` binary and the seconds spent building it now (0 if it existed):
    only the quantize tool and what it links (ggml, llama, llama-common)."""
    given = os.environ.get("QUANTBENCH_LLAMA_QUANTIZE") or shutil.which("llama-quantize")
    if given:
        return Path(given), 0.0
    off = ("BUILD_TESTS", "BUILD_EXAMPLES", "BUILD_SERVER", "BUILD_APP", "OPENSSL", "CURL")
    return build_llama_tool(tree, "build-quantbench", "llama-quantize", off=off)


def gguf_tensor_stats(path: Path) -> dict:
    """Parameters and bytes of the file's tensors, for the effective bits per weight."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return {}
    tensors = GGUFReader(path).tensors
    n = sum(int(t.n_elements) for t in tensors)
    size = sum(int(t.n_bytes) for t in tensors)
    types = sorted({t.tensor_type.name for t in tensors})
    return {"bits_per_weight": 8 * size / n if n else None, "tensor_types": types}


@register_quant_method("gguf")
class GGUF(QuantMethod):
    """params: type (Q8_0, Q4_K_M, ...: llama.cpp's names), fallback_pre_tokenizer (used only
    for a BPE tokenizer llama.cpp does not recognise, e.g. `gpt-2` for the tiny model's)."""

    format = "gguf"
    settings = {
        "type": {
            "type": "string",
            "enum": list(TYPE_FACTS),
            "default": "Q8_0",
            "description": "gguf: llama.cpp quantization type (F16, BF16, Q8_0 need no compiled "
            "tool)",
        },
        "fallback_pre_tokenizer": {
            "type": "string",
            "description": "gguf: llama.cpp pre-tokenizer for a BPE tokenizer it does not "
            "recognise (gpt-2 for the tiny model)",
        },
    }
    environment = QuantEnv(
        "gguf",
        ("gguf",),
        "GGUF: llama.cpp's converter and llama-quantize (built here).",
        conda=("cmake>=3.14", "make", "cxx-compiler"),
    )
    packages = ("torch", "transformers", "gguf")

    def quantize(self, src, dst, calibration):
        gtype = self.params.get("type", "Q8_0").upper()
        if gtype not in TYPE_FACTS:
            raise ValueError(f"GGUF type {gtype!r}: choose one of {sorted(TYPE_FACTS)}")
        tree = llama_cpp_tree()
        dst.mkdir(parents=True)
        scratch = dst.parent / ".gguf-scratch"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        setup = 0.0
        try:
            hf_dir = ensure_weights(src, scratch / "hf", calibration.get("seed", 0))
            out = dst / f"model-{gtype}.gguf"
            direct = CONVERT_TYPES.get(gtype)
            if direct is None:
                exe, setup = llama_quantize(tree)
            converted = out if direct else scratch / "model-BF16.gguf"
            fallback = self.params.get("fallback_pre_tokenizer") or "-"
            convert = [sys.executable, str(CONVERT_RUNNER), str(tree), fallback]
            _run(
                [*convert, str(hf_dir), "--outfile", str(converted), "--outtype", direct or "bf16"]
            )
            if direct is None:
                _run([str(exe), str(converted), str(out), gtype, str(os.cpu_count() or 1)])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        # Tokenizer and config beside the GGUF (see the module docstring); never weights.
        for f in Path(src).iterdir():
            if f.is_file() and not f.name.endswith(WEIGHT_SUFFIXES) and f.suffix != ".gguf":
                shutil.copy(f, dst / f.name)
        bits, block = TYPE_FACTS[gtype]
        return {
            "scheme": f"GGUF {gtype}",
            "weight_bits": bits,
            "group_size": block,
            "gguf_file": out.name,
            **gguf_tensor_stats(out),
            "llama_cpp": f"vendored in llama-cpp-python {LLAMA_CPP_PYTHON}"
            if "QUANTBENCH_LLAMA_CPP" not in os.environ
            else str(tree),
            "setup_seconds": setup,
            "calibration": None,  # no importance matrix: data-free
        }
