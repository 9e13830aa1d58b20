"""Snakemake entry point: a quantized layout without weights, for dummy models."""

from quantbench.jobs import quantize_job
from quantbench.quant.layout import Layout

quantize_job(snakemake, Layout)  # noqa: F821 - injected by Snakemake
