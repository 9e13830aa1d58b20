"""Preflight rendering and post-run checks, on the shipped ChatML tokenizer and lm-eval itself."""

import copy
import tempfile
from functools import partial
from pathlib import Path

import pytest

from quantbench.quality.preflight import (
    REGEX_FALLBACK,
    lm_eval_preflight_inputs,
    postrun_checks,
    render_preflight,
)

DOCS = {"qb_gen": "Question: What is 2 times 3?\nAnswer:", "qb_mc": "Question: Capital?\nAnswer:"}
TYPES = {"qb_gen": "generate_until", "qb_mc": "multiple_choice"}


@pytest.fixture(scope="module")
def tok():
    from quantbench.models import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="module")
def no_template(tok):
    t = copy.deepcopy(tok)
    t.chat_template = None
    return t


def test_chat_rendering_with_thinking_off(tok):
    pre = render_preflight(
        tok, DOCS, apply_chat_template=True, enable_thinking=False, output_types=TYPES
    )
    prompt = pre["tasks"]["qb_gen"]["prompt"]
    assert prompt == (
        "<|im_start|>user\nQuestion: What is 2 times 3?\nAnswer:<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert pre["chat_template_applied"] and pre["has_chat_template"]
    assert pre["thinking"]["template_controls_thinking"] is True
    assert pre["thinking"]["template_default_thinking"] is True  # unset renders like True
    assert pre["thinking"]["thinking_expected"] is False
    assert pre["warnings"] == []
    assert pre["tasks"]["qb_gen"]["prompt_tokens"] == len(
        tok.encode(prompt, add_special_tokens=False)
    )


def test_chat_model_without_template_is_warned(tok):
    pre = render_preflight(tok, DOCS, apply_chat_template=False, output_types=TYPES)
    assert pre["tasks"]["qb_gen"]["prompt"] == DOCS["qb_gen"]
    assert not pre["chat_template_applied"]
    assert any("chat model evaluated without chat template" in w for w in pre["warnings"])


def test_template_requested_but_missing(no_template):
    pre = render_preflight(
        no_template, DOCS, apply_chat_template=True, enable_thinking=False, output_types=TYPES
    )
    assert pre["tasks"]["qb_gen"]["prompt"] == DOCS["qb_gen"]
    assert any("no chat template but apply_chat_template=true" in w for w in pre["warnings"])
    assert any("enable_thinking has no effect" in w for w in pre["warnings"])
    assert not any("chat model evaluated without" in w for w in pre["warnings"])


def test_thinking_warnings(tok):
    pre = render_preflight(tok, DOCS, apply_chat_template=True, output_types=TYPES)
    warnings = " | ".join(pre["warnings"])
    assert pre["thinking"]["thinking_expected"] is True  # Qwen3-style template: on when unset
    assert "enable_thinking is unset" in warnings
    assert "qb_gen: generation task with thinking enabled but no think_end_token" in warnings
    assert "qb_mc: thinking enabled for a multiple_choice task" in warnings

    pre = render_preflight(
        tok,
        {"qb_gen": DOCS["qb_gen"]},
        apply_chat_template=True,
        enable_thinking=True,
        think_end_token="</think>",
        output_types=TYPES,
    )
    assert pre["warnings"] == []
    assert pre["thinking"]["think_end_token"] == "</think>"


def test_matches_lm_eval_prompt_construction(tok):
    """The preflight prompt is the one lm-eval's own fewshot_context builds (zero-shot)."""
    from lm_eval.tasks import TaskManager

    from quantbench.evaluate import render_tasks

    system = "You are a careful assistant."
    with tempfile.TemporaryDirectory() as include:
        render_tasks(["qb_mc", "qb_gen"], Path(include))
        task_dict = TaskManager(include_path=include).load(["qb_mc", "qb_gen"])["tasks"]
        inputs = lm_eval_preflight_inputs(task_dict)
        assert inputs["output_types"] == TYPES
        assert inputs["max_gen_toks"] == {"qb_gen": 16}
        for chat in (True, False):
            pre = render_preflight(
                tok,
                inputs["task_docs"],
                apply_chat_template=chat,
                enable_thinking=False,
                system_instruction=system,
                doc_to_text=inputs["doc_to_text"],
                output_types=inputs["output_types"],
            )
            # What HFLM.apply_chat_template passes to the tokenizer (chat_template_args included).
            template = partial(tok.apply_chat_template, tokenize=False, enable_thinking=False)
            for name, task in task_dict.items():
                expected = task.fewshot_context(
                    inputs["task_docs"][name],
                    0,
                    system_instruction=system,
                    apply_chat_template=chat,
                    chat_template=template if chat else None,
                )
                assert pre["tasks"][name]["prompt"] == expected, (name, chat)


def _lm_eval_filtered(raw: list[str]) -> list[str]:
    """Run the shipped qb_gen filter chain (regex then take_first) exactly as lm-eval does."""
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.filters.selection import TakeFirstFilter

    resps = RegexFilter(regex_pattern="(-?[0-9]+)").apply([[r] for r in raw], [{}] * len(raw))
    return list(TakeFirstFilter().apply(resps, [{}] * len(raw)))


def _gen_samples(raw: list[str], task="qb_gen", filt="first-integer") -> list[dict]:
    return [
        {
            "task": task,
            "doc_id": i,
            "filter": filt,
            "target": "6",
            "resps": [[r]],  # evaluator.py: [req.resps for req in requests], one request per doc
            "filtered_resps": [f],
            "exact_match": float(f == "6"),
        }
        for i, (r, f) in enumerate(zip(raw, _lm_eval_filtered(raw)))
    ]


def words(text: str) -> int:
    return len(text.split())


def test_regex_fallback_is_what_lm_eval_returns():
    assert _lm_eval_filtered(["no digits here", "it is 6", ""]) == [
        REGEX_FALLBACK,
        "6",
        "[invalid]",
    ]


def test_postrun_flags_truncation_and_unparsed():
    raw = ["6", "it is 6", "six", "a b c d", "a b c d e", "7", "8", "9", "", "1 2 3 4"]
    # words: 1 3 1 4 5 1 1 1 0 4 -> at/over the limit of 4: three; unparsed: "six", "a b c d",
    # "a b c d e", "" -> four of ten.
    mc = {
        "task": "qb_mc",
        "doc_id": 0,
        "filter": "none",
        "resps": [[[-1.5, False]], [[-2.0, True]]],
        "filtered_resps": [[-1.5, False], [-2.0, True]],
        "acc": 1.0,
    }
    out = postrun_checks(
        _gen_samples(raw) + [mc],
        max_gen_toks=4,
        count_tokens=words,
        thresholds={"truncated_rate": 0.05, "unparsed_rate": 0.10},
    )
    gen = out["tasks"]["qb_gen"]
    assert "qb_mc" not in out["tasks"]
    assert (gen["n"], gen["truncated"], gen["truncated_rate"]) == (10, 3, 0.3)
    assert gen["filters"]["first-integer"] == {"n": 10, "unparsed": 4, "unparsed_rate": 0.4}
    # sorted lengths 0 1 1 1 1 1 3 4 4 5: median 1, p90 (linear) 4 + 0.1 * (5 - 4) = 4.1, mean 2.1
    assert gen["output_tokens"] == {
        "p50": 1.0,
        "p90": pytest.approx(4.1),
        "max": 5.0,
        "mean": pytest.approx(2.1),
    }
    assert not out["ok"] and len(out["flags"]) == 2
    assert "30% of generations reached max_gen_toks=4" in out["flags"][0]
    assert "qb_gen/first-integer: 40% of answers unparsed" in out["flags"][1]


def test_postrun_clean_run_passes_and_slack_counts_near_misses():
    raw = [str(i) for i in range(20)] + ["1 2 3"]
    ok = postrun_checks(
        _gen_samples(raw),
        max_gen_toks={"qb_gen": 4},
        count_tokens=words,
        thresholds={"truncated_rate": 0.05, "unparsed_rate": 0.10},
    )
    assert ok["ok"] and ok["flags"] == []
    assert ok["tasks"]["qb_gen"]["truncated"] == 0
    slack = postrun_checks(
        _gen_samples(raw),
        max_gen_toks=4,
        count_tokens=words,
        slack=1,
        thresholds={"truncated_rate": 0.01},
    )
    assert slack["tasks"]["qb_gen"]["truncated"] == 1 and not slack["ok"]


def test_postrun_filters_counted_separately_lengths_once():
    raw = ["6", "x", "a b c d e f"]
    samples = _gen_samples(raw) + [
        {**s, "filter": "strict", "filtered_resps": [REGEX_FALLBACK]} for s in _gen_samples(raw)
    ]
    out = postrun_checks(samples, max_gen_toks=5, count_tokens=words, thresholds={})
    gen = out["tasks"]["qb_gen"]
    assert gen["n"] == 3 and gen["truncated"] == 1
    assert gen["filters"]["first-integer"]["unparsed"] == 2
    assert gen["filters"]["strict"]["unparsed_rate"] == 1.0


def test_postrun_without_raw_generations_says_so():
    # quantbench's samples.jsonl before issue 10 kept filtered_resps only.
    samples = [
        {"task": "qb_gen", "doc_id": 0, "filtered_resps": ["20"], "exact_match": 0.0},
        {"task": "qb_gen", "doc_id": 1, "filtered_resps": ["[invalid]"], "exact_match": 0.0},
    ]
    out = postrun_checks(samples, max_gen_toks=16, count_tokens=words, thresholds={})
    assert out["tasks"]["qb_gen"]["truncated_rate"] is None
    assert out["tasks"]["qb_gen"]["filters"]["none"]["unparsed_rate"] == 0.5
    assert any("no raw generations" in f for f in out["flags"])
