"""The reference server's settings, its clock, and what its capacity model gives analytically
(the package docstring describes the model)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

perf = time.perf_counter
if sys.platform == "linux":
    # Truth and client timestamps must be on one clock shared across processes.
    assert "CLOCK_MONOTONIC" in time.get_clock_info("perf_counter").implementation

LATE_S = 0.005  # a chunk written this far behind its deadline (half an ITL at 10 ms) is late


@dataclass
class Config:
    model: str = "refmodel"
    ttft_s: float = 0.05
    itl_s: float = 0.01
    eos_after: int | None = None  # natural length; None = never emits EOS
    truth_fd: int | None = None
    tokenizer: object | None = None
    uvloop: bool = False
    prefix_cache: bool = False  # serve shared prompt prefixes "from cache", as the engines do
    cache_report: bool = False  # usage.prompt_tokens_details.cached_tokens on every request
    log_prompts: bool = False  # each request's prompt ids in the truth log
    plant_cache_hit: int | None = None  # the N-th request reports half its prompt cached
    # Faults (tests/test_faults.py): what a broken engine does to a completion request.
    fault_status: int | None = None  # answer every completion with this HTTP status
    fault_hang: bool = False  # accept completions, never answer
    fault_malformed_sse: bool = False  # stream events that are not JSON
    fault_kill_parent: bool = False  # SIGKILL the process that started us (the benchmark job)
    # Capacity model (module docstring): decode slots, and the step time's two terms.
    slots: int | None = None
    step_s: float | None = None  # None: itl_s
    step_per_running_s: float = 0.0
    kv_cache_tokens: int | None = None  # KV usage = running tokens / this (else running / slots)


def capacity_model(
    slots: int,
    ttft_s: float,
    step_s: float,
    step_per_running_s: float,
    output_len: int,
    slo_tpot_s: float | None = None,
) -> dict:
    """What the capacity model gives, analytically, for requests of `output_len` tokens.

    Saturation (every slot busy): a request holds its slot for S = ttft + (L-1) x (step +
    k x slots), so the server completes slots / S requests/s. Below saturation at a steady
    rate λ (evenly spaced arrivals), Little's law gives the running count r = λ x S(r), with
    S(r) = ttft + (L-1) x (step + k x r); TPOT is step + k x r. The highest rate whose TPOT
    meets an SLO T runs r_T = (T - step) / k requests: λ_T = r_T / (ttft + (L-1) x T), as long
    as r_T fits the slots (else requests queue and TTFT grows: λ_T is saturation's).
    """
    gaps = output_len - 1
    service = ttft_s + gaps * (step_s + step_per_running_s * slots)
    out = {
        "saturation_request_throughput": slots / service,
        "saturation_output_throughput": slots * output_len / service,
        "saturation_tpot_s": step_s + step_per_running_s * slots,
    }
    if slo_tpot_s is not None and step_per_running_s > 0:
        running = min((slo_tpot_s - step_s) / step_per_running_s, slots)
        out["running_at_slo"] = running
        out["max_rate_under_slo"] = running / (ttft_s + gaps * slo_tpot_s)
    return out

