"""Compile SGLang 0.5.17's JIT Marlin kernels (awq_marlin / gptq_marlin) before an AWQ server
starts. SGLang builds them with nvcc on first use, inside the server's first CUDA-graph capture,
where a fresh machine sat for minutes; built here, side by side with other work, they land in
tvm-ffi's cache (content-addressed), which the server then loads and run_workflow.sh packs into
$OUT. Usage, with the staged site first on PYTHONPATH:
    python3 benchmarks/device/warm_sglang_jit.py [DTYPE...]   (default: bfloat16)
"""

import functools
import shutil
import sys
import time

import torch


def main(dtypes: list[str]) -> None:
    print(f"nvcc {shutil.which('nvcc')}, ninja {shutil.which('ninja')}", flush=True)
    from sglang.kernels.ops.quantization.awq_marlin_repack import _jit_awq_marlin_repack_module
    from sglang.kernels.ops.quantization.gptq_marlin import _jit_gptq_marlin_module

    builds = [("awq_marlin_repack", _jit_awq_marlin_repack_module)]
    for dtype in dtypes:
        gemm = functools.partial(_jit_gptq_marlin_module, getattr(torch, dtype))
        builds.append((f"gptq_marlin_gemm {dtype}", gemm))
    for name, build in builds:
        start = time.perf_counter()
        build()
        print(f"{name}: ready after {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["bfloat16"])
