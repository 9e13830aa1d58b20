"""Snakemake entry point: the BF16 baseline, used in place."""

from quantbench.jobs import quantize_job
from quantbench.quant.passthrough import BF16

quantize_job(snakemake, BF16)  # noqa: F821 - injected by Snakemake
