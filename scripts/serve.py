"""Snakemake entry point: see quantbench.jobs.serve_job."""

from quantbench.jobs import serve_job

serve_job(snakemake)  # noqa: F821 - injected by Snakemake
