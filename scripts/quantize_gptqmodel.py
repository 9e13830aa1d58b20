"""Snakemake entry point: GPTQModel (its own environment) to the gptq format."""

from quantbench.jobs import quantize_job
from quantbench.quant.gptqmodel_method import GPTQModelMethod

quantize_job(snakemake, GPTQModelMethod)  # noqa: F821 - injected by Snakemake
