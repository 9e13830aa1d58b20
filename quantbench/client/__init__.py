"""Streaming load client (see :mod:`quantbench.client.stream`) and exact-length prompts."""

from quantbench.client.prompts import make_prompt_ids, make_prompt_text, tokenize_via_server
from quantbench.client.stream import (
    StreamRecord,
    arrival_offsets,
    dump_records,
    load_records,
    loop_factory,
    run_load,
    run_load_sync,
)

__all__ = [
    "loop_factory",
    "StreamRecord",
    "arrival_offsets",
    "dump_records",
    "load_records",
    "make_prompt_ids",
    "make_prompt_text",
    "run_load",
    "run_load_sync",
    "tokenize_via_server",
]
