"""Reference OpenAI-compatible streaming server of known timing, logging ground truth.

Each request gets its first content chunk ``ttft`` after the request was fully received and
then one chunk per token every ``itl``, scheduled against absolute deadlines from the receive
time so a late callback never shifts the rest of the stream. Every request's truth (receive
time, the time each chunk was actually written, lag behind schedule) goes to a JSONL log, one
line per request, on ``time.perf_counter()`` -- CLOCK_MONOTONIC on Linux, which is one clock
for all processes, so the client's timestamps and ours compare directly.

Raw asyncio protocols instead of a web framework: at 1024 streams x 100 chunks/s every
microsecond per chunk counts, and the server shares its cores with the client under test.

Tokenizer: one token per UTF-8 byte (ids 0..255) unless ``--tokenizer tokenizer.json`` is given.
Per-request overrides in the body: ``ref_ttft_ms``, ``ref_itl_ms`` (for tests).

Capacity model (``--slots N``; the `sweep` scenario's test): at most N requests run at once, the
rest wait in a FIFO queue. A request's first token comes ``ttft`` after it is admitted to a
slot, and each later token one decode step after the one before, where a step takes
``step + step_per_running x running`` (running: the admitted requests at that moment, itself
included). So its saturation throughput and the highest rate whose TPOT meets an SLO are known
in advance (``capacity_model``). ``GET /metrics`` answers in vLLM's Prometheus names
(vllm:num_requests_running, vllm:num_requests_waiting, vllm:kv_cache_usage_perc,
vllm:num_preemptions_total) in every mode.
"""

from quantbench.refserver.config import Config, capacity_model
from quantbench.refserver.harness import max_overlap, read_truth, start_refserver

__all__ = ["Config", "capacity_model", "max_overlap", "read_truth", "start_refserver"]
