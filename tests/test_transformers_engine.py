"""The in-process Transformers engine on CPU: what it records beside each request."""

import json
import time

from quantbench.engines.transformers import TransformersEngine
from quantbench.models import make_dummy


def test_transformers_engine_marks_prefill_end_and_last_token_where_memory_is_read(tmp_path):
    # The decode-only memory peak starts between the first and second token: marked before the
    # first, it would include prefill's activations; after the second, it would miss a decode
    # step. The resident figure is read at the last token, inside generate(), while the KV cache
    # it counts is still alive.
    make_dummy(tmp_path / "m", arch_name="Qwen3-0.6B", vocab_size=512)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config |= {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    config |= {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32}
    config.pop("layer_types", None)
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    engine = TransformersEngine({"device": "cpu", "dtype": "float32"})
    engine.load(str(tmp_path / "m"), has_weights=False)
    marks, last_marks = [], []
    engine.memory.mark_prefill_done = lambda: marks.append(time.perf_counter())
    engine.memory.mark_last_token = lambda: last_marks.append(time.perf_counter())
    generate = engine.model.generate
    returned = []
    engine.model.generate = lambda *a, **k: (
        generate(*a, **k),
        returned.append(time.perf_counter()),
    )[0]
    record, mem = engine.generate(list(range(1, 17)), output_len=4)
    assert record.output_tokens == 4 and len(record.token_times) == 4
    assert len(marks) == 1
    assert record.token_times[0] <= marks[0] <= record.token_times[1]
    assert len(last_marks) == 1
    assert record.token_times[-1] <= last_marks[0] <= returned[0]
    assert mem["mem_method"].startswith("process_peak_rss")
    # Off CUDA there is no allocator figure for the weights: none is reported as one; what the
    # tensors hold is (a random-weight model: unquantized, its dense size).
    facts = engine.startup_facts()
    assert "weights_gib" not in facts
    assert facts["weights_load_path"]["value"] == "unquantized"
    assert facts["weights_held_gib"]["value"] == facts["dense_gib"]["value"]
