"""One streamed request's record (the raw evidence behind its timings), how an SSE data payload
updates it, and the JSONL dump of a run's records."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

from quantbench.metrics import RequestRecord

# Fast path, no JSON parse: a chunk whose choice carries a text field is one generation step,
# even when the text is empty (a token that decodes to nothing on its own: half a UTF-8
# character, a special token, an id a dummy model's small tokenizer lacks), as vLLM's client
# counts it. The chat role announcement (`"role": "assistant", "content": ""`, sent before any
# token) is not one.
_TOKEN = re.compile(rb'"(?:text|content|reasoning_content|reasoning)"\s*:\s*"')
_ROLE = re.compile(rb'"role"\s*:\s*"')  # SGLang sends "role": null in every delta
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"([^"]*)"')


@dataclass
class StreamRecord(RequestRecord):
    """RequestRecord plus the raw evidence behind it (all times perf_counter seconds)."""

    request_id: str = ""
    scheduled_time: float = 0.0  # when the arrival process wanted it sent
    headers_sent_time: float | None = None
    new_connection: bool | None = None
    chunk_times: list[float] = field(default_factory=list)  # every SSE data event
    chunk_content: list[bool] = field(default_factory=list)  # was it a generation step
    expected_prompt_tokens: int | None = None
    expected_output_tokens: int | None = None
    usage_seen: bool = False
    status: int | None = None
    stamp_source: str = ""  # "kernel" (SO_TIMESTAMPNS) or "read" (data_received)

    @property
    def prompt_mismatch(self) -> bool:
        return (
            self.usage_seen
            and self.expected_prompt_tokens is not None
            and self.prompt_tokens != self.expected_prompt_tokens
        )

    @property
    def output_mismatch(self) -> bool:
        return (
            self.error is None
            and self.expected_output_tokens is not None
            and self.output_tokens != self.expected_output_tokens
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StreamRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})



def handle_line(rec: StreamRecord, payload: bytes, t: float) -> bool:
    """Process one SSE data payload; True at [DONE]. Full JSON parse only for rare chunks."""
    if payload == b"[DONE]":
        return True
    content = _TOKEN.search(payload) is not None and _ROLE.search(payload) is None
    rec.chunk_times.append(t)
    rec.chunk_content.append(content)
    if content:
        rec.token_times.append(t)
    if (m := _FINISH.search(payload)) is not None:
        rec.finish_reason = m.group(1).decode()
    if _USAGE.search(payload):
        usage = json.loads(payload).get("usage") or {}
        rec.usage_seen = True
        rec.prompt_tokens = usage.get("prompt_tokens", 0)
        rec.output_tokens = usage.get("completion_tokens", 0)
        # vLLM (--enable-prompt-tokens-details) and SGLang (--enable-cache-report) report the
        # prompt tokens served from their prefix cache here.
        details = usage.get("prompt_tokens_details") or {}
        if details.get("cached_tokens") is not None:
            rec.cached_tokens = int(details["cached_tokens"])
    elif not content and b'"error"' in payload:
        err = json.loads(payload).get("error")
        if err:
            rec.error = f"server error: {json.dumps(err)[:300]}"
            return True
    return False



def dump_records(records: Sequence[StreamRecord], path: str) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps(r.to_dict()) + "\n" for r in records)


def load_records(path: str) -> list[StreamRecord]:
    """Read a raw JSONL dump back, e.g. to recompute metrics with a new definition."""
    with open(path) as f:
        return [StreamRecord.from_dict(json.loads(line)) for line in f if line.strip()]
