"""Run llama.cpp's own `convert_hf_to_gguf.py` from a llama.cpp tree, in a child process.

Usage: python gguf_convert.py TREE FALLBACK_PRE [convert args...]

The only change to llama.cpp's behaviour: a BPE tokenizer whose pre-tokenizer llama.cpp does not
recognise (its hash is not in the script's table, e.g. the offline tiny model's tokenizer) gets
FALLBACK_PRE (e.g. `gpt-2`) instead of an error, when FALLBACK_PRE is not `-`. Known tokenizers
(every Qwen3) are untouched.
"""

import sys


def main() -> None:
    tree, fallback, *args = sys.argv[1:]
    # The tree's own gguf-py first: the script and its gguf package change together.
    sys.path[:0] = [f"{tree}/gguf-py", tree]
    import convert_hf_to_gguf
    from conversion import base

    if fallback != "-":
        original = base.TextModel.get_vocab_base_pre

        def get_vocab_base_pre(self, tokenizer):
            try:
                return original(self, tokenizer)
            except NotImplementedError:
                print(f"quantbench: unrecognised pre-tokenizer, using {fallback!r}", flush=True)
                return fallback

        base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = ["convert_hf_to_gguf.py", *args]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
