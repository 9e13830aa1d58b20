"""Quality you can trust: preflight of the prompt format, post-run sanity of the generations,
a paired significance gate of each quantized cell against BF16, published-baseline
reproduction, and the quality/speed/memory frontier."""

from quantbench.quality.baseline import published_baselines, published_check, published_quality
from quantbench.quality.frontier import frontier_table, pareto_front, plot_frontier
from quantbench.quality.gate import gate, gate_table, paired_comparison, read_samples, sample_scores
from quantbench.quality.preflight import (
    lm_eval_preflight_inputs,
    postrun_checks,
    render_preflight,
)

__all__ = [
    "frontier_table",
    "gate",
    "gate_table",
    "lm_eval_preflight_inputs",
    "paired_comparison",
    "pareto_front",
    "plot_frontier",
    "postrun_checks",
    "published_baselines",
    "published_check",
    "published_quality",
    "read_samples",
    "render_preflight",
    "sample_scores",
]
