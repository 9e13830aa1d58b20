"""Snakemake entry point: GGUF through llama.cpp's convert_hf_to_gguf.py and llama-quantize."""

from quantbench.jobs import quantize_job
from quantbench.quant.gguf_method import GGUF

quantize_job(snakemake, GGUF)  # noqa: F821 - injected by Snakemake
