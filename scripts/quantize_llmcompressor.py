"""Snakemake entry point: llm-compressor one-shot quantization to compressed-tensors."""

from quantbench.jobs import quantize_job
from quantbench.quant.llmcompressor_method import LLMCompressor

quantize_job(snakemake, LLMCompressor)  # noqa: F821 - injected by Snakemake
