"""Snakemake entry point of every quantize rule: the quantization's registered method
(quantbench/quant/) writes the checkpoint and quantbench.jobs.quantize_job its manifest."""

from quantbench.jobs import quantize_job

quantize_job(snakemake)  # noqa: F821 - injected by Snakemake
