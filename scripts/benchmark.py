"""Snakemake entry point: see quantbench.jobs.benchmark_job."""

from quantbench.jobs import benchmark_job

benchmark_job(snakemake)  # noqa: F821 - injected by Snakemake
