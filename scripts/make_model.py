"""Snakemake entry point: see quantbench.jobs.model_job."""

from quantbench.jobs import model_job

model_job(snakemake)  # noqa: F821 - injected by Snakemake
