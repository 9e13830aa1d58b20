"""What every generated model is built from: the byte-level BPE tokenizer with Qwen3's ChatML
template, and a transformers config from an architecture's keys. Shared by the model sources
(quantbench.models) and the trained model (quantbench.trained)."""

from __future__ import annotations

import os
from pathlib import Path

from quantbench.io import REPO_ROOT

CORPUS = REPO_ROOT / "data" / "corpus.txt"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# ChatML, as Qwen3 uses; enable_thinking=False closes an empty think block like Qwen3's template.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)


def build_tokenizer(vocab_size: int = 4096, corpus: Path = CORPUS):
    """A byte-level BPE trained on the shipped corpus with a ChatML template.

    Training is single-threaded (RAYON_NUM_THREADS=1) so the result is byte-identical per run.
    """
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(corpus)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=131072,
    )


def arch_config(arch: dict, vocab_size: int):
    """A transformers config of `arch` (a config.json's keys) with room for `vocab_size` tokens."""
    from transformers import AutoConfig

    cfg = dict(arch)
    model_type = cfg.pop("model_type", "qwen3")
    for key in ("architectures", "transformers_version", "torch_dtype", "dtype", "auto_map"):
        cfg.pop(key, None)
    cfg["vocab_size"] = max(vocab_size, cfg.get("vocab_size", 0))
    return AutoConfig.for_model(model_type, **cfg)
