"""Snakemake entry point: see quantbench.jobs.report_job."""

from quantbench.jobs import report_job

report_job(snakemake)  # noqa: F821 - injected by Snakemake
