"""Snakemake entry point: a published quantized checkpoint, used in place."""

from quantbench.jobs import quantize_job
from quantbench.quant.prequantized import Prequantized

quantize_job(snakemake, Prequantized)  # noqa: F821 - injected by Snakemake
