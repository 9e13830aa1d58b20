#!/usr/bin/env bash
# The cache-free re-measurement on the lent GPU, run in the background after the SGLang install
# (see README.md): the long-input cell, then the load scenarios, each in its own WORKDIR and OUT.
cd "$(dirname "$0")/../.."
export ENGINE_SITE=/tmp/site-sglang TIME_LIMIT=${TIME_LIMIT:-1500}
mkdir -p /tmp/out-long /tmp/out-load
OUT=/tmp/out-long WORKDIR=runs/long benchmarks/device/run_workflow.sh benchmarks/device/configs/h100.yaml \
  benchmarks/device/configs/h100_long.yaml benchmarks/device/configs/cachefree_long.yaml \
  results/bench/Qwen3-8B/bf16/sglang-long/engine.json > /tmp/out-long/run.log 2>&1
OUT=/tmp/out-load WORKDIR=runs/load benchmarks/device/run_workflow.sh benchmarks/device/configs/h100.yaml \
  benchmarks/device/configs/cachefree_load.yaml "$@" > /tmp/out-load/run.log 2>&1
echo "all done" > /tmp/out-load/done
