#!/usr/bin/env bash
# Run the real workflow on the lent GPU machine (Python 3.12, torch and transformers there; no
# registry). Snakemake travels as wheels in .device/wheels-smk (see benchmarks/device/README.md);
# an engine staged with ../shared/tools/device-engines/stage is used when /tmp/site-ENGINE exists.
# Usage: benchmarks/device/run_workflow.sh CONFIG [snakemake args...]; results land in $OUT.
set -uo pipefail
config=$1
shift
if [ ! -f /tmp/site-smk/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site-smk \
    .device/wheels-smk/*.whl && touch /tmp/site-smk/.installed
fi
export PYTHONPATH=/tmp/site-smk${PYTHONPATH:+:$PYTHONPATH}
export PATH=/tmp/site-smk/bin:$PATH
for site in /tmp/site-sglang /tmp/site-vllm; do
  [ -d "$site" ] && export PYTHONPATH=$site:$PYTHONPATH PATH=$site/bin:$PATH
done
export VLLM_USE_FLASHINFER_SAMPLER=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
# A call has a hard time limit: stop Snakemake gently (SIGINT: it stops its jobs and removes
# their partial outputs) before it, so the finished results still get packed below.
# A run left over from a cut-off call holds the lock and the GPU: end it and its jobs.
pkill -KILL -f "[s]ite-smk/snakemake/__main__" && sleep 3
pkill -KILL -f "[.]snakemake/scripts/" ; rm -rf .snakemake/locks
timeout -s INT -k 30 "${TIME_LIMIT:-480}" python3 -m snakemake -c "$(nproc)" \
  --configfile "$config" --keep-going --rerun-incomplete "$@" > "$OUT/snakemake.log" 2>&1
rc=$?
tar czf "$OUT/results.tgz" --exclude='*.safetensors' --exclude='weights/*.json' \
  results/bench results/serve results/logs results/models/*/model.json \
  results/quantized/*/*/quant.json 2>/dev/null
echo "snakemake exit $rc"
tail -5 "$OUT/snakemake.log"
