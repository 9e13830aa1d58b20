"""Prompts of an exact token length for a given model's tokenizer.

Random vocabulary tokens are cheap and content-neutral, but decode -> encode rarely gives back the
same ids (BPE merges across token boundaries). So we iterate to a fixed point: decode, re-encode,
trim or top up to n, until the ids survive the round trip unchanged. Sending those ids (or their
text) then costs the server exactly n prompt tokens (plus any BOS / chat template it adds).
``tokenizer`` is a ``transformers`` tokenizer (encode/decode/all_special_ids/len).
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request

import numpy as np


def _sampler(tokenizer, rng: np.random.Generator):
    """Yields random ids that are not special and decode to clean, non-empty text."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    vocab = len(tokenizer)
    while True:
        for i in rng.integers(0, vocab, size=256):
            i = int(i)
            if i in special:
                continue
            s = tokenizer.decode([i])
            # Partial UTF-8 byte tokens decode to U+FFFD and never round-trip.
            if s.strip() and "\ufffd" not in s:
                yield i


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def make_prompt_ids(tokenizer, n_tokens: int, seed: int = 0, max_iter: int = 50) -> list[int]:
    """Exactly ``n_tokens`` ids whose decoded text re-encodes to the same ids (verified).

    Falls back to "re-encodes to the same length" if no exact fixed point is found; raises if
    even that fails.
    """
    if n_tokens <= 0:
        return []
    rng = np.random.default_rng(seed)
    draw = _sampler(tokenizer, rng)
    ids = [next(draw) for _ in range(n_tokens)]
    same_len = None
    for _ in range(max_iter):
        again = _encode(tokenizer, tokenizer.decode(ids))
        if again == ids:
            return ids
        if len(again) == n_tokens and same_len is None:
            same_len = ids
        # Trim or top up, then try again; fresh random tokens break oscillations.
        ids = again[:n_tokens] + [next(draw) for _ in range(n_tokens - len(again))]
    if same_len is not None:
        return same_len
    raise RuntimeError(f"no {n_tokens}-token prompt found that round-trips")


def prompt_seed(base_seed: int, *key) -> int:
    """The seed of one prompt, from the scenario's seed and the prompt's place in the run
    (scenario, input length, repeat, request): no two places draw from the same stream, so the
    prompt of one length never begins with another's (as ``seed + repeat`` did)."""
    digest = hashlib.blake2b(repr((int(base_seed), *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class PromptSource:
    """Every prompt a benchmark job sends, measured or warm-up, across its scenarios.

    Each prompt's seed is keyed by its place in the run (see ``prompt_seed``), and no two
    prompts start with the same token (redrawn from the next stream when they would), so no
    prompt of the run is a prefix of another and none can be served from an engine's prefix
    cache. With more prompts than the tokenizer has leading tokens to spare, the first two
    tokens are kept distinct instead. ``issued`` keeps every prompt, for the proof.
    """

    _TRIES = 16

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._leads: set[tuple[int, ...]] = set()
        self.issued: list[tuple[tuple, list[int]]] = []

    def prompt(self, n_tokens: int, base_seed: int, *key) -> list[int]:
        """An ``n_tokens``-token prompt for place ``key`` that shares no leading token with any
        earlier prompt of this source."""
        ids: list[int] = []
        for attempt in range(2 * self._TRIES):
            width = 1 if attempt < self._TRIES else 2
            ids = make_prompt_ids(self.tokenizer, n_tokens, prompt_seed(base_seed, *key, attempt))
            lead = tuple(ids[:width])
            if len(lead) < width or lead not in self._leads:
                break
        else:
            raise RuntimeError(f"no prompt for {key} with a leading token unused in this run")
        self._leads.update({tuple(ids[:1]), tuple(ids[:2])})
        self.issued.append((key, ids))
        return ids


def longest_shared_prefix(prompts: list[list[int]]) -> int:
    """The longest prefix any two of ``prompts`` share, in tokens (0: none share a token)."""
    ordered = sorted(tuple(p) for p in prompts)
    best = 0
    for a, b in zip(ordered, ordered[1:]):  # the longest common prefix is between neighbours
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        best = max(best, n)
    return best


def make_prompt_text(tokenizer, n_tokens: int, seed: int = 0) -> str:
    """Text that the tokenizer encodes to exactly ``n_tokens`` tokens (without specials)."""
    text = tokenizer.decode(make_prompt_ids(tokenizer, n_tokens, seed))
    got = len(_encode(tokenizer, text))
    if got != n_tokens:
        raise RuntimeError(f"prompt text encodes to {got} tokens, wanted {n_tokens}")
    return text


def tokenize_via_server(
    base_url: str, model: str, text: str, timeout: float = 10.0
) -> list[int] | None:
    """Token ids from the server's own tokenizer (vLLM ``POST /tokenize``); None if absent."""
    base = base_url.rstrip("/").removesuffix("/v1")
    req = urllib.request.Request(
        base + "/tokenize",
        data=json.dumps({"model": model, "prompt": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return list(json.loads(resp.read())["tokens"])
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None


def count_prompt_tokens(
    text: str, *, base_url: str | None = None, model: str = "", tokenizer=None
) -> int:
    """Prompt length as the server counts it, else as the local tokenizer does."""
    if base_url is not None:
        ids = tokenize_via_server(base_url, model, text)
        if ids is not None:
            return len(ids)
    if tokenizer is None:
        raise RuntimeError("server has no /tokenize and no local tokenizer was given")
    return len(_encode(tokenizer, text))
