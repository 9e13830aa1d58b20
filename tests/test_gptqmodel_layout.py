"""Issue 21: the Transformers engine fills a weightless GPTQ / AWQ layout (method `layout`) on
GPTQModel's kernels, as vLLM / SGLang do with --load-format dummy: the quantized layers stay
packed, their bytes are counted as the checkpoint's, and a forward pass runs. Tiny Qwen3 on CPU
(~10 s). Runs only in an environment with GPTQModel (envs/gptqmodel.yaml); skipped elsewhere."""

import json

import pytest
from transformers import Qwen3Config

from quantbench.engines.transformers import TransformersEngine
from quantbench.quant.layout import Layout
from tests.test_transformers_layout import TINY

pytest.importorskip("gptqmodel")


@pytest.mark.parametrize(("fmt", "bits"), [("gptq", 8), ("gptq", 4), ("awq", 4)])
def test_the_engine_keeps_a_filled_packed_layout_packed(tmp_path, fmt, bits):
    dummy = tmp_path / "dummy"
    dummy.mkdir()
    config = Qwen3Config.from_dict({**TINY, "tie_word_embeddings": True})
    (dummy / "config.json").write_text(json.dumps(config.to_dict()))
    Layout({"format": fmt, "bits": bits}).quantize(dummy, tmp_path / "layout", {})
    engine = TransformersEngine({"device": "cpu", "weights": "packed"})
    engine.load(str(tmp_path / "layout"), has_weights=False)
    facts = engine.startup_facts()
    assert facts["weights_load_path"]["value"] == "packed"
    held, dense = facts["weights_held_gib"]["value"], facts["dense_gib"]["value"]
    # the linears at `bits` of 16: well under the dense size (embeddings stay dense)
    assert held < dense * (0.75 if bits == 8 else 0.6)
    assert held == pytest.approx(facts["checkpoint_gib"]["value"], rel=0.1)
    record, _ = engine.generate([1, 2, 3, 4], 5)
    assert record.output_tokens == 5
    engine.close()
