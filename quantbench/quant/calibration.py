"""Calibration samples shared by every data-dependent method (GPTQ, AWQ, static activations,
GPTQModel): `calibration.dataset` is a local text file (default `data/corpus.txt`) or
`hf:<dataset id>`; `num_samples` windows of exactly `seq_len` tokens; `seed` picks the Hub rows."""

from __future__ import annotations

from pathlib import Path

from quantbench.io import REPO_ROOT


class CalibrationError(RuntimeError):
    pass


def _hub_text(dataset_id: str, calibration: dict, rows: int) -> str:
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset_id, split=calibration.get("split", "train"))
    except Exception as err:  # noqa: BLE001 - offline, unknown id, gated: one clear message
        raise CalibrationError(
            f"calibration.dataset hf:{dataset_id} could not be loaded ({type(err).__name__}: "
            f"{err}). Where the Hub is unreachable use a local text file (the default "
            "data/corpus.txt) or pre-fill the datasets cache and set HF_DATASETS_OFFLINE=1."
        ) from err
    return "\n\n".join(ds.shuffle(seed=calibration["seed"])[:rows]["text"])


def calibration_token_ids(tokenizer, calibration: dict) -> list[list[int]]:
    """`num_samples` consecutive windows of `seq_len` tokens of the calibration text."""
    n, seq_len = calibration["num_samples"], calibration["seq_len"]
    source = calibration["dataset"]
    if source.startswith("hf:"):
        text = _hub_text(source[3:], calibration, rows=n * 4)
    else:
        path = Path(source)
        # Relative paths are the workflow's (the job runs in its directory) or the repo's.
        if not path.is_absolute() and not path.exists():
            path = REPO_ROOT / path
        text = path.read_text()
    ids = tokenizer(text).input_ids
    if len(ids) < n * seq_len:
        raise CalibrationError(
            f"calibration text {source} has {len(ids)} tokens; {n} samples x {seq_len} need more:"
            " lower calibration.num_samples or calibration.seq_len"
        )
    return [ids[i * seq_len : (i + 1) * seq_len] for i in range(n)]


def calibration_dataset(tokenizer, calibration: dict):
    """The samples as a `datasets.Dataset` (what llm-compressor's oneshot takes)."""
    from datasets import Dataset

    samples = calibration_token_ids(tokenizer, calibration)
    return Dataset.from_dict(
        {"input_ids": samples, "attention_mask": [[1] * len(s) for s in samples]}
    )


def calibration_facts(calibration: dict) -> dict:
    """What the manifest records about the calibration a method used."""
    keys = ("dataset", "split", "num_samples", "seq_len", "seed")
    return {k: calibration[k] for k in keys if k in calibration}
