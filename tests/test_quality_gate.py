"""The paired gate: McNemar against a hand computation, injected collapses, noisy-but-equal
cells, published-baseline reproduction and a template-less run caught end to end."""

import math

import numpy as np
import pytest

from quantbench.quality.baseline import published_baselines, published_check, published_quality
from quantbench.quality.gate import gate, gate_table, paired_comparison, sample_scores
from quantbench.quality.preflight import postrun_checks, render_preflight
from quantbench.reference import default_reference_dir

needs_reference = pytest.mark.skipif(
    not default_reference_dir().is_dir(), reason="published reference tables not available"
)


def _pairs(n11: int, n10: int, n01: int, n00: int) -> tuple[dict, dict]:
    """base/quant per-doc 0/1 scores with the given 2x2 counts (n10: base right, quant wrong)."""
    cells = [(1, 1)] * n11 + [(1, 0)] * n10 + [(0, 1)] * n01 + [(0, 0)] * n00
    return {i: float(b) for i, (b, _) in enumerate(cells)}, {
        i: float(q) for i, (_, q) in enumerate(cells)
    }


def test_mcnemar_matches_hand_computation():
    base, quant = _pairs(30, 10, 2, 8)
    c = paired_comparison(base, quant)
    # Exact two-sided: 2 * P(X <= 2 | n=12, p=1/2) = 2 * (1 + 12 + 66) / 4096.
    assert c["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert (c["b"], c["c"], c["n"], c["test"]) == (10, 2, 50, "mcnemar-exact")
    assert c["base_mean"] == 40 / 50 and c["quant_mean"] == 32 / 50
    assert c["delta"] == pytest.approx(-8 / 50)
    assert c["ci_low"] < c["delta"] < c["ci_high"] < 0


def test_identical_cells():
    base, quant = _pairs(20, 0, 0, 20)
    c = paired_comparison(base, quant)
    assert c["p_value"] == 1.0 and c["delta"] == 0.0
    assert (c["ci_low"], c["ci_high"]) == (0.0, 0.0)
    assert gate(c, tolerance=0.01)["verdict"] == "pass"


def test_only_shared_documents_are_paired_and_seed_reproduces():
    base, quant = _pairs(40, 5, 5, 10)
    quant.pop(0)
    base["extra"] = 1.0
    c1 = paired_comparison(base, quant, seed=3)
    assert (c1["n"], c1["n_base_only"], c1["n_quant_only"]) == (59, 2, 0)
    c2 = paired_comparison(base, quant, seed=3)
    assert (c1["ci_low"], c1["ci_high"]) == (c2["ci_low"], c2["ci_high"])


def test_injected_collapse_is_flagged():
    rng = np.random.default_rng(0)
    base = {i: float(rng.random() < 0.8) for i in range(300)}
    # Quantized model wrong wherever base was right on 90% of those documents.
    quant = {i: 0.0 if (v == 1 and rng.random() < 0.9) else v for i, v in base.items()}
    c = paired_comparison(base, quant)
    assert c["delta"] < -0.5 and c["p_value"] < 1e-10
    g = gate(c, tolerance=0.02, alpha=0.05)
    assert g["verdict"] == "collapse" and "significant drop" in g["reason"]


def _noisy_equal(n: int, seed: int) -> tuple[dict, dict]:
    """Disagreements in both directions, equally many: same accuracy, different documents."""
    rng = np.random.default_rng(seed)
    base = {i: float(rng.random() < 0.6) for i in range(n)}
    right = [i for i, v in base.items() if v == 1]
    wrong = [i for i, v in base.items() if v == 0]
    k = n // 20
    quant = dict(base)
    quant.update({i: 0.0 for i in rng.choice(right, k, replace=False)})
    quant.update({i: 1.0 for i in rng.choice(wrong, k, replace=False)})
    return base, quant


def test_noisy_but_equal_is_not_a_collapse():
    base, quant = _noisy_equal(2000, seed=1)
    c = paired_comparison(base, quant)
    assert c["delta"] == 0.0 and c["b"] == c["c"] == 100 and c["p_value"] == 1.0
    assert gate(c, tolerance=0.02)["verdict"] == "pass"  # the CI excludes a 2-point drop
    small_base, small_quant = _noisy_equal(40, seed=2)
    small = paired_comparison(small_base, small_quant)
    verdict = gate(small, tolerance=0.02)
    assert verdict["verdict"] == "inconclusive"  # 40 docs cannot rule a 2-point drop out
    assert "cannot rule out" in verdict["reason"]


def test_large_but_insignificant_drop_is_inconclusive():
    base, quant = _pairs(5, 3, 0, 2)  # delta -0.3 on 10 docs, p = 2 * 1/8 = 0.25
    c = paired_comparison(base, quant)
    assert c["p_value"] == pytest.approx(0.25)
    assert gate(c, tolerance=0.02)["verdict"] == "inconclusive"


def test_continuous_scores_use_paired_bootstrap():
    rng = np.random.default_rng(5)
    n = 400
    base_arr = rng.normal(0.5, 0.2, n)
    noise = rng.normal(0, 0.05, n)
    base = dict(enumerate(base_arr))
    same = paired_comparison(base, dict(enumerate(base_arr + noise)), n_boot=4000)
    assert same["test"] == "paired-bootstrap" and not same["binary"]
    assert same["p_value"] > 0.05
    assert same["ci_low"] < 0 < same["ci_high"]
    # Normal theory: the 95% interval of a mean of n paired differences is about
    # +-1.96 * sd / sqrt(n); the bootstrap's should agree within a few percent.
    width = same["ci_high"] - same["ci_low"]
    assert width == pytest.approx(2 * 1.96 * noise.std(ddof=1) / math.sqrt(n), rel=0.1)
    worse = paired_comparison(base, dict(enumerate(base_arr + noise - 0.1)), n_boot=4000)
    assert worse["p_value"] == pytest.approx(1 / 4001)  # no resample reaches zero
    assert gate(worse, tolerance=0.05)["verdict"] == "collapse"
    assert gate(worse, tolerance=0.2)["verdict"] == "pass"


def test_empty_comparison_is_inconclusive():
    c = paired_comparison({1: 1.0}, {2: 1.0})
    assert c["n"] == 0 and math.isnan(c["p_value"])
    assert gate(c, tolerance=0.02)["verdict"] == "inconclusive"


def test_published_check():
    assert published_check(0.63, 0.6375, 0.02)["verdict"] == "reproduced"
    bad = published_check(0.40, 0.6375, 0.02)
    assert bad["verdict"] == "evaluation suspect" and bad["diff"] == pytest.approx(-0.2375)
    # 400 items at p ~ 0.6 have stderr ~0.0245: a 4-point gap is within 1.96 stderr (0.048),
    # a 6-point gap is not.
    wide = published_check(0.5975, 0.6375, 0.02, stderr=0.0245)
    assert wide["allowed"] == pytest.approx(1.96 * 0.0245) and wide["verdict"] == "reproduced"
    assert published_check(0.5775, 0.6375, 0.02, stderr=0.0245)["verdict"] == "evaluation suspect"
    assert published_check(None, 0.6375, 0.02)["verdict"] == "evaluation suspect"


@needs_reference
def test_published_quality_rows():
    pub = published_quality()
    assert len(pub) == 6 + 2 * 7  # six HellaSwag rows; two 235B checkpoints x seven scores
    row = pub[(pub.model == "Qwen/Qwen3-8B") & (pub.quant == "bf16")].iloc[0]
    assert (row.task, row.metric, row.value, row.limit) == ("hellaswag", "acc", 0.6375, 400)
    awq = pub[(pub.quant == "awq-int4") & (pub.task == "ifeval")]
    strict = awq[awq.metric == "prompt_level_strict_acc"]
    assert strict.value.tolist() == [0.5547]
    assert set(pub.source) == {"hellaswag_l40.csv", "vllm_qwen3_235b_kvcache_lmeval.csv"}


@needs_reference
def test_published_baselines():
    pub = published_quality()
    base = published_baselines(pub, {"qwen3-8b": "Qwen/Qwen3-8B"})
    assert base == {
        ("qwen3-8b", "hellaswag"): {
            "value": 0.6375,
            "metric": "acc",
            "limit": 400,
            "source": "hellaswag_l40.csv",
        }
    }
    big = {"qwen3-235b": "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8"}
    with pytest.raises(ValueError, match="ifeval"):
        published_baselines(pub, big, quant="fp8")
    fp8 = published_baselines(pub, big, quant="fp8", metrics={"ifeval": "prompt_level_strict_acc"})
    assert fp8[("qwen3-235b", "ifeval")]["value"] == 0.5508


def _hellaswag_cells(bf16_right: int, n: int = 400, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    base = {i: float(i < bf16_right) for i in range(n)}
    fp8 = dict(base)
    flip = rng.choice(n, 12, replace=False)  # small symmetric-ish noise
    fp8.update({int(i): 1.0 - base[int(i)] for i in flip})
    collapsed = {i: (0.0 if v == 1 and i % 10 else v) for i, v in base.items()}
    return {
        ("qwen3-8b", "bf16", "vllm", "hellaswag"): base,
        ("qwen3-8b", "fp8", "vllm", "hellaswag"): fp8,
        ("qwen3-8b", "w4a16", "vllm", "hellaswag"): collapsed,
        ("qwen3-8b", "fp8", "sglang", "hellaswag"): fp8,  # no sglang bf16: borrows vllm's
    }


def test_gate_table_with_reproduced_baseline():
    published = {("qwen3-8b", "hellaswag"): {"value": 0.6375, "limit": 400}}
    table = gate_table(_hellaswag_cells(255), tolerance=0.02, published=published)
    by = table.set_index(["engine", "quantization"])
    assert len(table) == 4
    assert by.loc[("vllm", "bf16"), "verdict"] == "baseline"
    assert by.loc[("vllm", "bf16"), "baseline_check"] == "reproduced"  # 255/400 = 0.6375
    assert by.loc[("vllm", "w4a16"), "verdict"] == "collapse"
    assert by.loc[("vllm", "fp8"), "verdict"] in ("pass", "inconclusive")
    assert by.loc[("sglang", "fp8"), "baseline_engine"] == "vllm"
    assert by.loc[("sglang", "fp8"), "n"] == 400
    assert not table["baseline_suspect"].astype(bool).any()


def test_gate_table_marks_everything_suspect_when_bf16_does_not_reproduce():
    published = {("qwen3-8b", "hellaswag"): 0.6375}
    table = gate_table(_hellaswag_cells(120), tolerance=0.02, published=published)  # 0.30
    assert set(table["verdict"]) == {"evaluation suspect"}
    by = table.set_index(["engine", "quantization"])
    assert by.loc[("vllm", "w4a16"), "paired_verdict"] == "collapse"  # kept for diagnosis
    assert "published 0.6375" in by.loc[("vllm", "fp8"), "reason"]


def test_gate_table_without_baseline_and_pooled():
    cells = {
        ("m", "bf16", "e", "a"): {0: 1.0, 1: 0.0},
        ("m", "int4", "e", "a"): {0: 1.0, 1: 0.0},
        ("m", "bf16", "e", "b"): {0: 1.0},
        ("m", "int4", "e", "b"): {0: 0.0},
        ("m", "int4", "e", "c"): {0: 0.0},
    }
    table = gate_table(cells, tolerance=0.02, pool_tasks=True)
    by = table.set_index(["quantization", "task"])
    assert by.loc[("int4", "c"), "verdict"] == "inconclusive"
    assert "no bf16 baseline" in by.loc[("int4", "c"), "reason"]
    # Pooled: documents (a,0) (a,1) (b,0) paired; (c,0) has no baseline.
    assert by.loc[("int4", "all"), "n"] == 3
    assert by.loc[("int4", "all"), "delta"] == pytest.approx(-1 / 3)
    assert table["baseline_suspect"].isna().all()  # nothing published to check against


def test_sample_scores_from_lm_eval_logs():
    logs = [
        {
            "task": "g",
            "doc_id": 0,
            "filter": "strict",
            "metrics": ["exact_match"],
            "exact_match": 1.0,
        },
        {
            "task": "g",
            "doc_id": 0,
            "filter": "flex",
            "metrics": ["exact_match"],
            "exact_match": 0.0,
        },
        {"task": "mc", "doc_id": 3, "acc": True, "acc_norm": 0.0},
    ]
    with pytest.raises(ValueError, match="pick one"):
        sample_scores(logs)
    got = sample_scores(logs, filter_key={"g": "flex"})
    assert got == {"g": {0: 0.0}, "mc": {3: 1.0}}
    assert sample_scores(logs[2:], metric="acc_norm") == {"mc": {3: 0.0}}
    with pytest.raises(ValueError, match="twice"):
        sample_scores([logs[2], logs[2]])
    with pytest.raises(ValueError, match="per-sample"):
        sample_scores([{"task": "t", "doc_id": 0, "bleu": ["ref", "pred"]}], metric="bleu")


def test_template_less_run_is_flagged():
    """A chat model scored on raw prompts rambles past the answer: the preflight names the cause,
    the post-run check sees unparsed answers, and the gate calls the drop vs BF16 a collapse."""
    from quantbench.models import build_tokenizer

    tok = build_tokenizer()
    docs = {"qb_gen": "Question: What is 2 times 3?\nAnswer:"}
    pre = render_preflight(
        tok, docs, apply_chat_template=False, output_types={"qb_gen": "generate_until"}
    )
    assert any("chat model evaluated without chat template" in w for w in pre["warnings"])

    n = 50
    good = [
        {
            "task": "qb_gen",
            "doc_id": i,
            "filter": "first-integer",
            "resps": [["6"]],
            "filtered_resps": ["6"],
            "exact_match": 1.0,
        }
        for i in range(n)
    ]
    # Raw text: the model continues the document instead of answering (no digits); the regex
    # filter falls back to "[invalid]" on 45 of 50.
    bad = [
        {
            **s,
            "resps": [["Question: What is the next question"]],
            "filtered_resps": ["[invalid]"],
            "exact_match": 0.0,
        }
        for s in good[:45]
    ] + good[45:]
    check = postrun_checks(
        bad,
        max_gen_toks=16,
        count_tokens=lambda t: len(tok.encode(t)),
        thresholds={"truncated_rate": 0.05, "unparsed_rate": 0.10},
    )
    assert not check["ok"]
    assert check["tasks"]["qb_gen"]["filters"]["first-integer"]["unparsed_rate"] == 0.9

    scores = {
        ("m", "bf16", "e", "qb_gen"): sample_scores(good)["qb_gen"],
        ("m", "int4", "e", "qb_gen"): sample_scores(bad)["qb_gen"],
    }
    table = gate_table(scores, tolerance=0.02)
    assert table.set_index("quantization").loc["int4", "verdict"] == "collapse"
