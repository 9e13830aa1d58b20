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


def write_layout(tmp_path, fmt: str, bits: int, tie: bool) -> str:
    """What method `layout` writes for the tiny dummy Qwen3: its directory."""
    dummy = tmp_path / "dummy"
    dummy.mkdir()
    config = Qwen3Config.from_dict({**TINY, "tie_word_embeddings": tie})
    (dummy / "config.json").write_text(json.dumps(config.to_dict()))
    Layout({"format": fmt, "bits": bits}).quantize(dummy, tmp_path / "layout", {})
    return str(tmp_path / "layout")


@pytest.mark.parametrize(("fmt", "bits"), [("gptq", 8), ("gptq", 4), ("awq", 4)])
def test_the_engine_keeps_a_filled_packed_layout_packed(tmp_path, fmt, bits):
    engine = TransformersEngine({"device": "cpu", "weights": "packed"})
    engine.load(write_layout(tmp_path, fmt, bits, tie=True), has_weights=False)
    facts = engine.startup_facts()
    assert facts["weights_load_path"]["value"] == "packed"
    held, dense = facts["weights_held_gib"]["value"], facts["dense_gib"]["value"]
    # the linears at `bits` of 16: well under the dense size (embeddings stay dense)
    assert held < dense * (0.75 if bits == 8 else 0.6)
    assert held == pytest.approx(facts["checkpoint_gib"]["value"], rel=0.1)
    record, _ = engine.generate([1, 2, 3, 4], 5)
    assert record.output_tokens == 5
    engine.close()


# A fresh process, as a benchmark job is: GPTQModel is first imported inside from_pretrained
# (Transformers' AWQ quantizer), and that import keeps the loading frames, and so the state
# dict, alive. The engine asks for float16 and gets the state dict in bfloat16: the cast
# Transformers makes for AWQ on CUDA, made on the CPU.
CAST_ON_LOAD = """
import json, sys, weakref, torch
from quantbench.engines.transformers import TransformersEngine
from quantbench.engines.transformers import layout_weights as lw
drawn, draw = [], lw.random_state_dict
def in_bfloat16(config, dtype, *args, **kwargs):
    state = draw(config, torch.bfloat16, *args, **kwargs)
    drawn.extend(weakref.ref(t) for t in state.values())
    return state
lw.random_state_dict = in_bfloat16
engine = TransformersEngine({"device": "cpu", "weights": "packed", "dtype": "float16"})
engine.load(sys.argv[1], has_weights=False)
alive = [tuple(t.shape) for t in (r() for r in drawn) if t is not None]
print(json.dumps({"drawn": len(drawn), "alive": alive,
                  "lm_head": str(engine.model.lm_head.weight.dtype)}))
"""


def test_tensors_cast_on_load_do_not_stay_beside_the_model(tmp_path):
    """On CUDA Transformers loads AWQ in float16 whatever dtype the engine asks for: the
    state dict's bfloat16 tensors are cast, and the originals must then go (on the H100 they
    stayed: two embedding matrices over every AWQ cell)."""
    import subprocess
    import sys

    layout = write_layout(tmp_path, "awq", 4, tie=False)
    run = subprocess.run(
        [sys.executable, "-c", CAST_ON_LOAD, layout],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["lm_head"] == "torch.float16"  # cast on load
    assert out["drawn"] > 0 and out["alive"] == []
