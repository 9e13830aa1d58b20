"""Snakemake entry point: see quantbench.jobs.evaluate_job."""

from quantbench.jobs import evaluate_job

evaluate_job(snakemake)  # noqa: F821 - injected by Snakemake
