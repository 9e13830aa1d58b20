"""Model sources written offline: what the engines read from them."""

import json

import pytest

from quantbench.models import make_dummy


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("Qwen3-8B", "Qwen3ForCausalLM"),
        # a config.json without `architectures`: the class comes from its model_type
        ({"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 1}, "Qwen3ForCausalLM"),
    ],
)
def test_a_dummy_model_names_its_architecture(tmp_path, arch, expected):
    # SGLang 0.5.17 failed at start-up on a dummy config without it ('NoneType' architectures).
    if isinstance(arch, dict):
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "config.json").write_text(json.dumps(arch))
        arch = str(tmp_path / "src")
    facts = make_dummy(tmp_path / "m", arch_name=arch, vocab_size=512)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architectures"] == [expected]
    assert facts["has_weights"] is False
    assert not list((tmp_path / "m").glob("*.safetensors"))


def test_tiny_writes_random_weights_of_a_whole_named_architecture(tmp_path):
    from quantbench.models import make_tiny

    arch = {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 128}
    arch |= {"intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2}
    arch |= {"num_key_value_heads": 1, "head_dim": 64, "vocab_size": 1000}
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    facts = make_tiny(tmp_path / "m", seed=0, vocab_size=512, arch=str(tmp_path / "arch.json"))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    # the named architecture whole, not the tiny model's keys (e.g. its 4 layers)
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (
        128,
        2,
        1000,
    )
    assert facts["has_weights"] and list((tmp_path / "m").glob("*.safetensors"))
