"""Checks that an evaluation measured the model and not the prompt format.

Two halves, both saved with every evaluation:

- ``render_preflight`` (before the run): the exact zero-shot prompt of one document per task as the
  model will see it, the chat-template and thinking settings, and warnings for the known ways a
  prompt format silently ruins a score (a chat model fed raw text, as in the Qwen3-235B FP8 report
  whose AIME25 fell from 0.70 to 0.07; thinking left on for a short generation budget).
- ``postrun_checks`` (after the run): from lm-eval's per-sample logs, how many generations hit the
  length limit and how many answers the task's filter could not parse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

# lm-eval 0.4.13, lm_eval/filters/extraction.py: RegexFilter(fallback="[invalid]") returns this
# string for a response in which the pattern finds nothing (a non-str response counts as "").
REGEX_FALLBACK = "[invalid]"
GENERATION_TYPES = frozenset({"generate_until"})
LOGLIKELIHOOD_TYPES = frozenset({"loglikelihood", "loglikelihood_rolling", "multiple_choice"})
DEFAULT_THRESHOLDS = {"truncated_rate": 0.05, "unparsed_rate": 0.10}
_PROBE = [{"role": "user", "content": "1+1?"}]


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _render_chat(tokenizer, messages, enable_thinking) -> str:
    # Same call as lm-eval's HFLM.apply_chat_template; enable_thinking is only passed when set so
    # that "unset" renders the template's own default, as lm-eval does.
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **extra
    )


def _thinking_behaviour(tokenizer) -> tuple[bool, bool | None, str | None]:
    """(template controls thinking, template thinks when enable_thinking is unset, forced-on
    marker) found by rendering a probe three ways rather than by parsing Jinja."""
    on, off, unset = (_render_chat(tokenizer, _PROBE, v) for v in (True, False, None))
    controls = on != off
    default = (unset == on) if controls else None
    # Reasoning-only templates (e.g. DeepSeek-R1) open the think block in the prompt itself.
    forced = "<think>" if unset.rstrip().endswith("<think>") else None
    return controls, default, forced


def render_preflight(
    tokenizer,
    task_docs: Mapping[str, Any],
    *,
    apply_chat_template: bool,
    enable_thinking: bool | None = None,
    system_instruction: str | None = None,
    doc_to_text: Callable[[str, Any], str] | None = None,
    think_end_token: str | None = None,
    output_types: Mapping[str, str] | None = None,
) -> dict:
    """The prompt each task's first document becomes, the settings that shaped it, and warnings.

    Inputs: ``tokenizer`` a Transformers tokenizer; ``task_docs`` task name -> one document (a dict,
    turned into text by ``doc_to_text(task, doc)``, or already the prompt text when
    ``doc_to_text`` is None); the chat/thinking settings the evaluation runs with;
    ``output_types`` task -> lm-eval output_type (``generate_until``, ``multiple_choice``...), used
    by the thinking checks. ``lm_eval_preflight_inputs`` builds docs, doc_to_text and output_types
    from lm-eval's own task objects.

    Rendering mirrors lm-eval 0.4.13's zero-shot ``fewshot_context``: with the chat template, an
    optional system message plus one user message rendered with ``add_generation_prompt=True``;
    without it, system instruction and text concatenated.

    Returns ``{"apply_chat_template", "has_chat_template", "chat_template_applied",
    "system_instruction", "thinking": {"enable_thinking", "think_end_token",
    "template_controls_thinking", "template_default_thinking", "thinking_expected"},
    "tasks": {task: {"output_type", "prompt", "prompt_tokens"}}, "warnings": [str]}``.
    """
    output_types = dict(output_types or {})
    warnings: list[str] = []
    has_template = has_chat_template(tokenizer)
    chat = apply_chat_template and has_template
    if has_template and not apply_chat_template:
        warnings.append(
            "chat model evaluated without chat template: the tokenizer has one but prompts are "
            "sent as raw text (set apply_chat_template: true, or confirm this is a base model)"
        )
    if apply_chat_template and not has_template:
        warnings.append(
            "tokenizer has no chat template but apply_chat_template=true: prompts fall back to "
            "raw text or the run fails"
        )

    controls, default, forced = _thinking_behaviour(tokenizer) if chat else (False, None, None)
    if not chat:
        thinking = False
    elif forced:
        thinking = True
    elif controls:
        thinking = default if enable_thinking is None else bool(enable_thinking)
    else:
        thinking = False
    if chat and controls and enable_thinking is None and default:
        warnings.append(
            "enable_thinking is unset and the chat template thinks by default: set it explicitly"
        )
    if enable_thinking is not None and not chat:
        warnings.append("enable_thinking has no effect: no chat template is applied")

    tasks = {}
    for task, doc in task_docs.items():
        text = doc if doc_to_text is None else doc_to_text(task, doc)
        if not isinstance(text, str):
            # lm-eval's multiple-input tasks (winogrande) return a choice index here.
            warnings.append(f"{task}: doc_to_text returned {type(text).__name__}, not a prompt")
            text = str(text)
        if chat:
            messages = [{"role": "system", "content": system_instruction}] * bool(
                system_instruction
            ) + [{"role": "user", "content": text}]
            prompt = _render_chat(tokenizer, messages, enable_thinking)
        else:
            prompt = (system_instruction or "") + text
        kind = output_types.get(task)
        tasks[task] = {
            "output_type": kind,
            "prompt": prompt,
            "prompt_tokens": len(tokenizer.encode(prompt, add_special_tokens=False)),
        }
        if thinking and kind in GENERATION_TYPES and not think_end_token:
            warnings.append(
                f"{task}: generation task with thinking enabled but no think_end_token to strip: "
                "the reasoning trace reaches the answer filter and eats max_gen_toks"
            )
        if thinking and kind in LOGLIKELIHOOD_TYPES:
            warnings.append(
                f"{task}: thinking enabled for a {kind} task: lm-eval scores the choices right "
                "after the prompt, where the model expects to think (lm-eval's hf model refuses)"
            )
    return {
        "apply_chat_template": bool(apply_chat_template),
        "has_chat_template": has_template,
        "chat_template_applied": chat,
        "system_instruction": system_instruction,
        "thinking": {
            "enable_thinking": enable_thinking,
            "think_end_token": think_end_token,
            "template_controls_thinking": controls,
            "template_default_thinking": default,
            "thinking_expected": thinking,
        },
        "tasks": tasks,
        "warnings": warnings,
    }


def lm_eval_preflight_inputs(task_dict: Mapping[str, Any]) -> dict:
    """``task_docs``, ``doc_to_text``, ``output_types`` and ``max_gen_toks`` from lm-eval tasks.

    ``task_dict`` is task name -> lm-eval task, i.e. ``TaskManager(...).load(tasks)["tasks"]``.
    Uses each task's first evaluation document and its own ``doc_to_text``, so the preflight
    renders what lm-eval renders. ``max_gen_toks`` holds generation tasks only.
    """
    docs, types, max_gen = {}, {}, {}
    for name, task in task_dict.items():
        docs[name] = next(iter(task.eval_docs))
        types[name] = task.config.output_type
        if task.config.output_type in GENERATION_TYPES:
            # lm-eval's HFLM default when the task does not set it (huggingface.py).
            max_gen[name] = (task.config.generation_kwargs or {}).get("max_gen_toks", 256)
    return {
        "task_docs": docs,
        "doc_to_text": lambda task, doc: task_dict[task].doc_to_text(doc),
        "output_types": types,
        "max_gen_toks": max_gen,
    }


def _first(x):
    """Unwrap lm-eval's per-request / per-repeat nesting down to the first response."""
    while isinstance(x, (list, tuple)) and x and not _is_loglikelihood_pair(x):
        x = x[0]
    return x


def _is_loglikelihood_pair(x) -> bool:
    return (
        isinstance(x, (list, tuple))
        and len(x) == 2
        and isinstance(x[0], (int, float, np.floating))
        and isinstance(x[1], (bool, np.bool_))
    )


def _generation(sample: dict) -> str | None:
    """The raw generation of a generate_until sample (``resps`` = [[text, ...]]), else None."""
    raw = _first(sample.get("resps"))
    return raw if isinstance(raw, str) else None


def _unparsed(filtered, fallback: str) -> bool:
    value = _first(filtered)
    return value is None or (isinstance(value, str) and value.strip() in ("", fallback))


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def postrun_checks(
    samples: Iterable[dict],
    *,
    max_gen_toks: int | Mapping[str, int],
    count_tokens: Callable[[str], int],
    thresholds: Mapping[str, float] | None = None,
    fallback: str = REGEX_FALLBACK,
    slack: int = 0,
) -> dict:
    """Length-limit and parse-failure rates of generation tasks, from lm-eval's sample logs.

    Inputs: ``samples`` lm-eval 0.4.13 logged samples (``results["samples"][task]`` entries, or
    the jsonl rows quantbench saves), each with ``task`` (added by the caller), ``doc_id``,
    ``filter``, ``resps`` and ``filtered_resps``; ``max_gen_toks`` one limit or task -> limit;
    ``count_tokens(text) -> int`` the model's tokenizer; ``thresholds`` rates above which a flag
    is raised (defaults ``DEFAULT_THRESHOLDS``); ``slack`` tokens below the limit still counted as
    cut, because re-encoding decoded text can merge tokens the model emitted separately.

    What lm-eval logs decides what can be checked: ``resps`` for a generate_until request is
    [[text]] with the stop sequence and, when ``think_end_token`` is set, a *completed* thinking
    trace already removed; so the length is a lower bound on what was generated, and a trace cut
    before ``</think>`` is kept whole and shows up at the limit. Multiple-choice samples (whose
    responses are (loglikelihood, is_greedy) pairs) are not generation and are skipped. An answer
    is unparsed when its filtered response is ``fallback`` (the regex filter's "[invalid]") or
    empty. Each filter of a task is logged as its own sample, so parse rates are per filter and
    lengths are counted once per document.

    Returns ``{"ok", "flags": [str], "thresholds", "tasks": {task: {"n", "max_gen_toks",
    "truncated", "truncated_rate", "output_tokens": {"p50", "p90", "max", "mean"},
    "filters": {filter: {"n", "unparsed", "unparsed_rate"}}}}}``; ``truncated_rate`` is None when
    the log holds no raw generations (then a flag says the length check could not run).
    """
    limits = dict(DEFAULT_THRESHOLDS, **(thresholds or {}))
    lengths: dict[str, dict] = {}
    parsed: dict[str, dict[str, list[bool]]] = {}
    missing_raw: set[str] = set()
    for s in samples:
        task = s.get("task", "?")
        raw = _generation(s)
        first = _first(s.get("filtered_resps"))
        if raw is None and (_is_loglikelihood_pair(first) or not isinstance(first, str)):
            continue  # loglikelihood-scored sample
        if raw is None:
            missing_raw.add(task)
        else:
            lengths.setdefault(task, {})[s.get("doc_id")] = count_tokens(raw)
        parsed.setdefault(task, {}).setdefault(str(s.get("filter", "none")), []).append(
            _unparsed(s.get("filtered_resps"), fallback)
        )

    flags, out = [], {}
    for task in sorted(parsed):
        limit = max_gen_toks.get(task) if isinstance(max_gen_toks, Mapping) else max_gen_toks
        counts = np.array(list(lengths.get(task, {}).values()), dtype=float)
        entry: dict[str, Any] = {"n": len(counts), "max_gen_toks": limit}
        if counts.size and limit is not None:
            cut = int((counts >= limit - slack).sum())
            entry.update(truncated=cut, truncated_rate=cut / counts.size)
            p50, p90 = np.percentile(counts, [50, 90])
            entry["output_tokens"] = {
                "p50": float(p50),
                "p90": float(p90),
                "max": float(counts.max()),
                "mean": float(counts.mean()),
            }
            if entry["truncated_rate"] > limits["truncated_rate"]:
                flags.append(
                    f"{task}: {entry['truncated_rate']:.0%} of generations reached "
                    f"max_gen_toks={limit} (threshold {limits['truncated_rate']:.0%}); "
                    f"output tokens p50 {p50:.0f}, p90 {p90:.0f}"
                )
        else:
            entry.update(truncated=None, truncated_rate=None, output_tokens=None)
            if task in missing_raw:
                flags.append(f"{task}: no raw generations in the sample log: length unchecked")
            elif limit is None:
                flags.append(f"{task}: max_gen_toks unknown: length unchecked")
        entry["filters"] = {}
        for filt, bad in sorted(parsed[task].items()):
            rate = _rate(sum(bad), len(bad))
            entry["filters"][filt] = {"n": len(bad), "unparsed": sum(bad), "unparsed_rate": rate}
            if rate is not None and rate > limits["unparsed_rate"]:
                flags.append(
                    f"{task}/{filt}: {rate:.0%} of answers unparsed ({fallback!r} or empty; "
                    f"threshold {limits['unparsed_rate']:.0%})"
                )
        out[task] = entry
    return {"ok": not flags, "flags": flags, "thresholds": limits, "tasks": out}
