"""A small model that knows its tasks: the `trained` model source.

Random weights score chance on every task in every format, so a quantization that breaks a model
cannot be told from one that does not. This module makes a model with real learned weights,
offline and deterministically from a seed:

- a **world** of synthetic facts (``make_world``): made-up people, each with a home town, a
  favourite colour, a pet and a number of coins, plus small sums;
- the shipped lm-eval tasks are questions about that world (``task_documents``): ``qb_mc``
  (multiple choice over four towns / colours / pets, scored by loglikelihood) and ``qb_gen``
  (free generation whose first integer must equal the answer: coins and sums);
  ``python -m quantbench.trained --write-tasks`` regenerates ``data/tasks/qb_*.jsonl`` and the
  calibration text ``data/qb_world.txt``;
- the tiny Qwen3 architecture (every Linear input a multiple of 128, so group-128 schemes apply)
  trained on every fact of the world in the tasks' own prompt format (``train``), with a
  byte-level BPE tokenizer trained on the same text.

What the model knows is recall of facts it was taught, stored in its weights: exactly what a
quantization that damages weights loses first. Determinism: one thread, deterministic
algorithms, a seeded order of examples; two builds on the same machine give identical weights
(``weights_sha256`` in the manifest). Floating-point kernels may differ between CPU kinds, so
another machine may differ in the last bits.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from pathlib import Path

from quantbench.io import REPO_ROOT

TASK_DIR = REPO_ROOT / "data" / "tasks"
WORLD_TEXT = REPO_ROOT / "data" / "qb_world.txt"

# The tiny Qwen3 architecture the source trains (every Linear input a multiple of 128).
TRAINED_ARCH = {
    "model_type": "qwen3",
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
DEFAULTS = {
    "people": 250,
    "sums_max": 12,
    "vocab_size": 512,
    "steps": 1000,
    "batch_size": 64,
    "lr": 3e-3,
    "weight_decay": 0.0,
}

_SYLLABLES = [
    "ba", "ko", "ri", "mu", "sa", "te", "lo", "ni", "pa", "du", "ve", "zo", "ka", "mi", "ru", "fe",
    "go", "li", "na", "to",
]  # fmt: skip
TOWNS = ["Arden", "Brisk", "Corlo", "Dunmere", "Elvan", "Fenwick", "Galt", "Holm"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black"]
PETS = ["cat", "dog", "owl", "fox", "horse", "goat", "rabbit", "turtle"]


def make_world(seed: int = 0, people: int = 250, sums_max: int = 12) -> dict:
    """Seeded facts: ``people`` distinct made-up names with town, colour, pet and coins, and the
    sums a + b for 0 <= a, b <= ``sums_max``."""
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < people:
        name = "".join(rng.choice(_SYLLABLES) for _ in range(3)).capitalize()
        if name not in names:
            names.append(name)
    persons = [
        {
            "name": n,
            "town": rng.choice(TOWNS),
            "colour": rng.choice(COLOURS),
            "pet": rng.choice(PETS),
            "coins": rng.randint(10, 99),
        }
        for n in names
    ]
    return {"seed": seed, "people": persons, "sums_max": sums_max}


_MC = {
    "town": ("Where does {name} live?", TOWNS),
    "colour": ("What is the favourite colour of {name}?", COLOURS),
    "pet": ("Which pet does {name} have?", PETS),
}


def qa_pairs(world: dict) -> list[tuple[str, str]]:
    """Every fact of the world as (question, answer), in the tasks' wording."""
    pairs = []
    for p in world["people"]:
        for attr, (q, _) in _MC.items():
            pairs.append((q.format(name=p["name"]), p[attr]))
        pairs.append((f"How many coins does {p['name']} have?", str(p["coins"])))
    n = world["sums_max"]
    for a in range(n + 1):
        for b in range(n + 1):
            pairs.append((f"What is {a} plus {b}?", str(a + b)))
    return pairs


def prompt(question: str) -> str:
    """The tasks' doc_to_text (data/tasks/qb_*.yaml)."""
    return f"Question: {question}\nAnswer:"


def task_documents(world: dict, seed: int = 0) -> dict[str, list[dict]]:
    """qb_mc: every person's town, colour and pet as four choices (the answer and three seeded
    distractors); qb_gen: every person's coins and a seeded half of the sums."""
    rng = random.Random(seed + 1)
    mc, gen = [], []
    for p in world["people"]:
        for attr, (q, options) in _MC.items():
            wrong = rng.sample([o for o in options if o != p[attr]], 3)
            choices = wrong + [p[attr]]
            rng.shuffle(choices)
            mc.append(
                {
                    "question": q.format(name=p["name"]),
                    "choices": choices,
                    "answer": choices.index(p[attr]),
                }
            )
        gen.append(
            {"question": f"How many coins does {p['name']} have?", "answer": str(p["coins"])}
        )
    n = world["sums_max"]
    sums = [(a, b) for a in range(n + 1) for b in range(n + 1)]
    for a, b in sorted(rng.sample(sums, len(sums) // 2)):
        gen.append({"question": f"What is {a} plus {b}?", "answer": str(a + b)})
    return {"qb_mc": mc, "qb_gen": gen}


def world_text(world: dict) -> str:
    """Every fact in prompt form, one per line block: the tokenizer's corpus and the
    calibration text of the trained model."""
    return "".join(f"{prompt(q)} {a}\n" for q, a in qa_pairs(world))


def build_tokenizer(text: str, vocab_size: int):
    import tempfile

    from quantbench.model_parts import build_tokenizer as build

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "world.txt"
        corpus.write_text(text)
        return build(vocab_size, corpus)


def _examples(tokenizer, world: dict):
    """(input ids, loss mask) per fact: the whole 'Question: ..\\nAnswer: A\\n' with loss on
    ' A\\n' only (the question's names are not predictable)."""
    out = []
    for q, a in qa_pairs(world):
        ctx = tokenizer(prompt(q), add_special_tokens=False).input_ids
        full = tokenizer(f"{prompt(q)} {a}\n", add_special_tokens=False).input_ids
        assert full[: len(ctx)] == ctx, (q, a)
        out.append((full, [0] * len(ctx) + [1] * (len(full) - len(ctx))))
    return out


def weights_sha256(model) -> str:
    """One hash over every tensor's name and bytes: two builds are identical iff it matches."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def train(out_dir: Path | None, *, seed: int = 0, **overrides) -> dict:
    """Train the model on the world of ``seed`` and save it (weights + tokenizer) into
    ``out_dir``; returns facts (steps, final loss, seconds, weights hash)."""
    import torch
    from transformers import AutoModelForCausalLM

    from quantbench.model_parts import arch_config

    opts = {**DEFAULTS, **overrides}
    torch.set_num_threads(1)  # the kernels' split depends on the thread count
    torch.use_deterministic_algorithms(True)
    world = make_world(seed, opts["people"], opts["sums_max"])
    tokenizer = build_tokenizer(world_text(world), opts["vocab_size"])
    # A base model: it learned the tasks' raw prompts, so it has no chat template (a chat
    # evaluation of it gets the preflight's "no chat template" warning, as it should).
    tokenizer.chat_template = None
    config = arch_config({**TRAINED_ARCH, **(opts.get("arch") or {})}, len(tokenizer))
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    examples = _examples(tokenizer, world)
    width = max(len(ids) for ids, _ in examples)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in examples])
    mask = torch.tensor([m + [0] * (width - len(m)) for _, m in examples], dtype=torch.bool)
    labels = ids.masked_fill(~mask, -100)
    attn = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in examples])

    steps, bs = opts["steps"], opts["batch_size"]
    opt = torch.optim.AdamW(
        model.parameters(), lr=opts["lr"], betas=(0.9, 0.98), weight_decay=opts["weight_decay"]
    )
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)),
    )
    gen = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    start = time.perf_counter()
    model.train()
    losses = []
    for _ in range(steps):
        if len(order) < bs:
            order = torch.cat([order, torch.randperm(len(examples), generator=gen)])
        batch, order = order[:bs], order[bs:]
        out = model(input_ids=ids[batch], attention_mask=attn[batch], labels=labels[batch])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
    seconds = time.perf_counter() - start
    model = model.to(torch.bfloat16).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    facts = {
        "steps": steps,
        "examples": len(examples),
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "train_seconds": round(seconds, 1),
        "weights_sha256": weights_sha256(model),
        "options": opts,
    }
    if out_dir is not None:
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return {**facts, "model": model, "tokenizer": tokenizer, "world": world}


TRAIN_KEYS = ("people", "sums_max", "vocab_size", "steps", "batch_size", "lr", "arch")
CACHE_ENV = "QB_TRAINED_CACHE"


def _cache_key(seed: int, opts: dict) -> str:
    """What the weights depend on: the options, this code and the tokenizer's, the versions."""
    import tokenizers
    import torch
    import transformers

    from quantbench import model_parts

    h = hashlib.sha256(json.dumps({"seed": seed, **opts}, sort_keys=True).encode())
    for mod in (__file__, model_parts.__file__):
        h.update(Path(mod).read_bytes())
    h.update(f"{torch.__version__} {transformers.__version__} {tokenizers.__version__}".encode())
    return h.hexdigest()[:16]


def make_trained(out_dir: Path, spec: dict) -> dict:
    """The `trained` model source: train (``train``) into ``out_dir`` and return the manifest's
    facts. Spec keys: ``seed``, ``vocab_size`` and ``steps``; the world's size and the optimiser
    are this module's ``DEFAULTS``.

    Where ``QB_TRAINED_CACHE`` names a directory (the tests set it, so one session trains once)
    a build with the same key (options, code, versions) is copied from there instead of
    trained again; ``cached`` says so. The demo leaves it unset and trains."""
    import shutil

    seed = int(spec.get("seed", 0))
    opts = {k: spec[k] for k in TRAIN_KEYS if spec.get(k) is not None}
    key = _cache_key(seed, {**DEFAULTS, **opts})
    cache = os.environ.get(CACHE_ENV)
    hit = Path(cache) / key if cache else None
    if hit is not None and (hit / "facts.json").is_file():
        shutil.copytree(hit / "weights", out_dir)
        facts = json.loads((hit / "facts.json").read_text())
        return {**facts, "path": str(out_dir), "cached": str(hit)}
    result = train(out_dir, seed=seed, **opts)
    facts = {
        "path": str(out_dir),
        "has_weights": True,
        "quality_applicable": True,
        "training": {k: result[k] for k in ("steps", "examples", "final_loss", "train_seconds")},
        "weights_sha256": result["weights_sha256"],
        "cache_key": key,
        "tasks": "data/tasks/qb_mc.jsonl, data/tasks/qb_gen.jsonl (quantbench.trained)",
    }
    if hit is not None:
        tmp = Path(cache) / f".{key}.{os.getpid()}"
        shutil.copytree(out_dir, tmp / "weights")
        (tmp / "facts.json").write_text(json.dumps({**facts, "path": None}))
        try:
            os.replace(tmp, hit)
        except OSError:  # another process filled it first
            shutil.rmtree(tmp, ignore_errors=True)
    return facts


def write_tasks(seed: int = 0, task_dir: Path = TASK_DIR, text_path: Path = WORLD_TEXT) -> None:
    world = make_world(seed, DEFAULTS["people"], DEFAULTS["sums_max"])
    for name, docs in task_documents(world, seed).items():
        (task_dir / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    text_path.write_text(world_text(world))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write-tasks", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.write_tasks:
        write_tasks(args.seed)
