"""Snakemake entry point: see quantbench.jobs.published_job."""

from quantbench.jobs import published_job

published_job(snakemake)  # noqa: F821 - injected by Snakemake
