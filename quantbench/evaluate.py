"""Quality through lm-evaluation-harness, offline, on tasks shipped as local JSONL.

The task YAMLs in data/tasks/ name their data with a `{DATA_DIR}` placeholder: lm-eval resolves
relative `data_files` against the working directory, so each run renders them with absolute
paths into its own include directory.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from quantbench.plan import TASK_DIR


def render_tasks(tasks: list[str], dest: Path) -> Path:
    for name in tasks:
        text = (TASK_DIR / f"{name}.yaml").read_text()
        (dest / f"{name}.yaml").write_text(text.replace("{DATA_DIR}", str(TASK_DIR.resolve())))
    return dest


def _finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def tidy_scores(results: dict) -> list[dict]:
    """lm-eval's `results` dict -> one row per (task, metric, filter) with its stderr."""
    rows = []
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "filter": filt,
                    "value": _finite(value),
                    "stderr": _finite(stderr),
                    "n": results.get("n-samples", {}).get(task, {}).get("effective"),
                }
            )
    return rows


def run_lm_eval(checkpoint: str, engine_settings: dict, cfg: dict, samples_path: Path) -> dict:
    """Evaluate an in-process Transformers model with lm-eval's `hf` model."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from quantbench.engines.transformers_engine import resolve_device

    with tempfile.TemporaryDirectory() as include:
        render_tasks(cfg["tasks"], Path(include))
        manager = TaskManager(include_path=include)
        model_args = {
            "pretrained": checkpoint,
            "dtype": engine_settings.get("dtype", "bfloat16"),
            "device": resolve_device(engine_settings.get("device", "auto")),
        }
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args=model_args,
            tasks=cfg["tasks"],
            task_manager=manager,
            limit=cfg.get("limit"),
            batch_size=cfg.get("batch_size", 8),
            random_seed=cfg["seed"],
            numpy_random_seed=cfg["seed"],
            torch_random_seed=cfg["seed"],
            fewshot_random_seed=cfg["seed"],
            apply_chat_template=cfg.get("apply_chat_template", False),
            log_samples=True,
        )
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    with open(samples_path, "w") as fh:
        for task, samples in results.get("samples", {}).items():
            for s in samples:
                fh.write(
                    json.dumps(
                        {
                            "task": task,
                            "doc_id": s.get("doc_id"),
                            "target": s.get("target"),
                            "filtered_resps": s.get("filtered_resps"),
                            **{k: s[k] for k in ("acc", "exact_match") if k in s},
                        },
                        default=str,
                    )
                    + "\n"
                )
    return {
        "scores": tidy_scores(results),
        "lm_eval_version": lm_eval.__version__,
        "model_args": model_args,
    }
