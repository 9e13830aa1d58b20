#!/usr/bin/env bash
# Run the real workflow on the lent GPU machine (Python 3.12, torch and transformers there; no
# registry). Snakemake travels as wheels in .device/wheels-smk (see benchmarks/device/README.md);
# an engine staged as wheels (benchmarks/device/README.md) is used when /tmp/site-ENGINE exists.
# Usage: [WORKDIR=runs/x] [ENGINE_SITE=/tmp/site-sglang] benchmarks/device/run_workflow.sh CONFIG
# [OVERLAY.yaml...] [snakemake args...]; results land in $OUT. Later config files override keys
# of earlier ones (Snakemake merges them; a list such as `cells:` is replaced whole). WORKDIR
# keeps one config's results apart from another's; ENGINE_SITE names the one staged engine to
# use (vLLM and SGLang pin different packages and must not share a path).
set -uo pipefail
configs=()
while [ $# -gt 0 ] && [[ $1 == *.yaml ]]; do configs+=("$PWD/$1"); shift; done
if [ ! -f /tmp/site-smk/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site-smk \
    .device/wheels-smk/*.whl && touch /tmp/site-smk/.installed
fi
export PYTHONPATH=/tmp/site-smk${PYTHONPATH:+:$PYTHONPATH}
export PATH=/tmp/site-smk/bin:$PATH
site=${ENGINE_SITE:-}
[ -n "$site" ] && export PYTHONPATH=$site:$PYTHONPATH PATH=$site/bin:$PATH
# Python packages the client needs that the machine may lack travel in .device/wheels-extra.
missing=$(python3 -c "
import importlib.util as u
print(' '.join(m for m in ('aiohttp', 'uvloop', 'pynvml') if u.find_spec(m) is None))")
if [ -n "$missing" ] && [ -d .device/wheels-extra ]; then
  echo "installing extra wheels for: $missing"
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site-extra \
    .device/wheels-extra/*.whl
  export PYTHONPATH=$PYTHONPATH:/tmp/site-extra
fi
export VLLM_USE_FLASHINFER_SAMPLER=0
# SGLang compiles some kernels with nvcc on first use (its Marlin GEMM for AWQ/GPTQ takes
# minutes) into tvm-ffi's cache; a fresh machine has none. A cache packed by an earlier call
# ($OUT/tvm-ffi-cache.tgz, carried back as .device/tvm-ffi-cache.tgz) is restored first.
jit_cache=${TVM_FFI_CACHE_DIR:-$HOME/.cache/tvm-ffi}
if [ -f .device/tvm-ffi-cache.tgz ]; then
  mkdir -p "$jit_cache" && tar xzf .device/tvm-ffi-cache.tgz -C "$jit_cache"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
# A call has a hard time limit: stop Snakemake gently (SIGINT: it stops its jobs and removes
# their partial outputs) before it, so the finished results still get packed below.
# A run left over from a cut-off call holds the lock and the GPU: end it and its jobs. Snakemake,
# its jobs and their servers all run in the WORKDIR, so a run in another WORKDIR (started in the
# background by an earlier call) is left alone.
work=${WORKDIR:-.}
mkdir -p "$work"
here=$(pwd -P) abs=$(cd "$work" && pwd -P)
if [ "$abs" = "$here" ]; then
  pkill -KILL -f "[p]ython3 -m snakemake" && sleep 3
  pkill -KILL -f "[.]snakemake/scripts/" ; pkill -KILL -f "[s]glang.launch_server|[v]llm serve"
else
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$abs" ] && kill -KILL "${proc#/proc/}" 2>/dev/null
  done
fi
rm -rf "$work/.snakemake/locks"
# mtime triggers: a later call with other targets must not redo finished cells.
timeout -s INT -k 30 "${TIME_LIMIT:-480}" python3 -m snakemake -c "$(nproc)" \
  --configfile "${configs[@]}" -d "$work" -s "$PWD/Snakefile" --keep-going --rerun-incomplete \
  --rerun-triggers=mtime "$@" > "$OUT/snakemake.log" 2>&1
rc=$?
(cd "$work" && tar czf "$OUT/results.tgz" --exclude='*.safetensors' --exclude='weights/*.json' \
  results/bench results/serve results/logs results/models/*/model.json \
  results/quantized/*/*/quant.json results/report 2>/dev/null)
[ -d "$jit_cache" ] && tar czf "$OUT/tvm-ffi-cache.tgz" -C "$jit_cache" .
echo "snakemake exit $rc"
tail -5 "$OUT/snakemake.log"
