"""Quality through lm-evaluation-harness, offline, on tasks shipped as local JSONL.

The task YAMLs in data/tasks/ name their data with a `{DATA_DIR}` placeholder: lm-eval resolves
relative `data_files` against the working directory, so each run renders them with absolute
paths into its own include directory.

A served engine (vLLM, SGLang) is evaluated through its own OpenAI-compatible server, so the
score belongs to the kernels that were benchmarked: loglikelihood tasks through
`local-completions` (prompt logprobs via echo), generation tasks through
`local-chat-completions` when the chat template is on (the server renders it) and through
`local-completions` otherwise. The Transformers engine keeps lm-eval's `hf` model. Every run of
a model uses the same tasks, limit, seed and settings, whatever its quantization.

Each evaluation saves a preflight (the rendered prompts and chat/thinking settings, before the
run) and post-run checks (length-limit and unparsed-answer rates, after), see quantbench.quality.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from lm_eval.api.registry import register_model
from lm_eval.models.openai_completions import LocalCompletionsAPI

from quantbench.plan import TASK_DIR
from quantbench.quality.preflight import (
    GENERATION_TYPES,
    lm_eval_preflight_inputs,
    postrun_checks,
    render_preflight,
)

# What the gate and post-run checks read from a logged sample; `doc` and `arguments` are dropped
# (they repeat the dataset), the metric values named in `metrics` are kept beside these.
SAMPLE_KEYS = ("task", "doc_id", "filter", "metrics", "target", "filtered_resps", "resps")


@register_model("quantbench-chat-completions-ll")
class ChatTemplatedCompletions(LocalCompletionsAPI):
    """`local-completions` that renders the chat template client-side with the configured
    thinking switch. The stock class, with tokenized_requests=False, turns a chat prompt into a
    JSON message string, which a loglikelihood request then tokenizes as text; and it never
    passes enable_thinking, so its prompt would differ from the preflight's."""

    def __init__(self, enable_thinking: bool | None = None, **kwargs):
        super().__init__(**kwargs)
        self.enable_thinking = enable_thinking

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        extra = {} if self.enable_thinking is None else {"enable_thinking": self.enable_thinking}
        return self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
            **extra,
        )


def render_tasks(tasks: list[str], dest: Path) -> Path:
    """The shipped task YAMLs with their placeholders filled: `{DATA_DIR}` (data/tasks/) and
    `{LM_EVAL_TASKS}` (lm-eval's own task directory, which data/tasks/hellaswag.yaml includes)."""
    import lm_eval.tasks

    builtin = str(Path(lm_eval.tasks.__file__).parent)
    for name in tasks:
        text = (TASK_DIR / f"{name}.yaml").read_text()
        text = text.replace("{DATA_DIR}", str(TASK_DIR.resolve()))
        (dest / f"{name}.yaml").write_text(text.replace("{LM_EVAL_TASKS}", builtin))
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


def sample_rows(results: dict) -> list[dict]:
    """lm-eval's logged samples, trimmed to what the gate and post-run checks read."""
    rows = []
    for task, samples in sorted(results.get("samples", {}).items()):
        for s in samples:
            row = {"task": task, **{k: s.get(k) for k in SAMPLE_KEYS[1:]}}
            row.update({m: s[m] for m in s.get("metrics", []) if m in s})
            rows.append(row)
    return rows


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def lm_eval_runs(
    output_types: dict[str, str],
    cfg: dict,
    *,
    checkpoint: str,
    engine_settings: dict,
    base_url: str | None = None,
    model_name: str | None = None,
) -> list[dict]:
    """The lm-eval runs of one evaluation: ``[{"model", "model_args", "tasks", "batch_size",
    "gen_kwargs"}]``. In-process (``base_url`` None): one ``hf`` run. Served: a completions run
    for loglikelihood tasks (and generation tasks without chat template), a chat-completions run
    for generation tasks with it."""
    tasks = list(cfg["tasks"])
    chat = bool(cfg.get("apply_chat_template"))
    thinking = cfg.get("enable_thinking")
    think_end = cfg.get("think_end_token")
    if base_url is None:
        from quantbench.engines.transformers import resolve_device

        model_args = {
            "pretrained": checkpoint,
            "dtype": engine_settings.get("dtype", "bfloat16"),
            "device": resolve_device(engine_settings.get("device", "auto")),
            "enable_thinking": thinking,
            "think_end_token": think_end,
        }
        run = {"model": "hf", "model_args": _drop_none(model_args), "tasks": tasks}
        return [{**run, "batch_size": cfg.get("batch_size", 8), "gen_kwargs": None}]

    common = {
        "model": model_name,
        "num_concurrent": cfg.get("num_concurrent", 4),
        "max_retries": cfg.get("max_retries", 3),
        # lm-eval truncates prompts to this; the server rejects anything longer anyway.
        "max_length": engine_settings.get("max_model_len") or engine_settings.get("context_length"),
        "timeout": int(engine_settings.get("request_timeout_s", 1800)),
    }
    gen = [t for t in tasks if output_types.get(t) in GENERATION_TYPES]
    completion_tasks = [t for t in tasks if not (chat and t in gen)]
    runs = []
    if completion_tasks:
        args = {
            **common,
            "base_url": f"{base_url}/v1/completions",
            # lm-eval needs the model's tokenizer to split context from continuation; the prompt
            # goes as text, the server re-tokenizes it (identical for tokenizers without BOS).
            "tokenizer": checkpoint,
            "tokenizer_backend": "huggingface",
            "tokenized_requests": False,
        }
        model = "local-completions"
        if chat:
            model, args["enable_thinking"] = "quantbench-chat-completions-ll", thinking
        runs.append(
            {
                "model": model,
                "model_args": _drop_none(args),
                "tasks": completion_tasks,
                "batch_size": 1,
                "gen_kwargs": None,
            }
        )
    if chat and gen:
        args = {**common, "base_url": f"{base_url}/v1/chat/completions"}
        args["think_end_token"] = think_end
        # The server renders the template: the thinking switch travels in the request body
        # (vLLM and SGLang both read chat_template_kwargs).
        kwargs = (
            None if thinking is None else {"chat_template_kwargs": {"enable_thinking": thinking}}
        )
        runs.append(
            {
                "model": "local-chat-completions",
                "model_args": _drop_none(args),
                "tasks": gen,
                "batch_size": 1,
                "gen_kwargs": kwargs,
            }
        )
    return runs


def cell_flags(preflight: dict, postrun: dict | None = None) -> list[str]:
    """quality.json's `flags`: preflight warnings and post-run checks over their thresholds."""
    return [f"preflight: {w}" for w in preflight["warnings"]] + [
        f"postrun: {f}" for f in (postrun or {}).get("flags", [])
    ]


def _load_tasks(tasks: list[str], include: str) -> dict:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include).load(tasks)["tasks"]


def run_evaluation(
    checkpoint: str,
    engine_settings: dict,
    cfg: dict,
    samples_path: Path,
    out: dict,
    *,
    base_url: str | None = None,
    model_name: str | None = None,
) -> None:
    """Preflight, lm-eval run(s) and post-run checks, written into ``out`` as each finishes, so
    that a run that fails still leaves its preflight in the result file. ``base_url`` and
    ``model_name`` address a running server; without them the in-process ``hf`` model runs."""
    import lm_eval
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    with tempfile.TemporaryDirectory() as include:
        render_tasks(cfg["tasks"], Path(include))
        inputs = lm_eval_preflight_inputs(_load_tasks(cfg["tasks"], include))
        pre = render_preflight(
            tokenizer,
            inputs["task_docs"],
            apply_chat_template=bool(cfg.get("apply_chat_template")),
            enable_thinking=cfg.get("enable_thinking"),
            doc_to_text=inputs["doc_to_text"],
            think_end_token=cfg.get("think_end_token"),
            output_types=inputs["output_types"],
        )
        out["preflight"] = {**pre, "max_gen_toks": inputs["max_gen_toks"]}
        out["flags"] = cell_flags(pre)

        runs = lm_eval_runs(
            inputs["output_types"],
            cfg,
            checkpoint=checkpoint,
            engine_settings=engine_settings,
            base_url=base_url,
            model_name=model_name,
        )
        out["lm_eval_version"] = lm_eval.__version__
        out["runs"] = [{k: r[k] for k in ("model", "model_args", "tasks")} for r in runs]
        scores, samples = [], []
        for run in runs:
            results = lm_eval.simple_evaluate(
                model=run["model"],
                model_args=run["model_args"],
                tasks=run["tasks"],
                task_manager=TaskManager(include_path=include),
                limit=cfg.get("limit"),
                batch_size=run["batch_size"],
                gen_kwargs=run["gen_kwargs"],
                random_seed=cfg["seed"],
                numpy_random_seed=cfg["seed"],
                torch_random_seed=cfg["seed"],
                fewshot_random_seed=cfg["seed"],
                apply_chat_template=bool(cfg.get("apply_chat_template")),
                log_samples=True,
            )
            scores += tidy_scores(results)
            samples += sample_rows(results)
    out["scores"] = scores
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    with open(samples_path, "w") as fh:
        fh.writelines(json.dumps(s, default=str) + "\n" for s in samples)
    post = postrun_checks(
        samples,
        max_gen_toks=inputs["max_gen_toks"],
        count_tokens=lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
        thresholds=cfg.get("thresholds"),
    )
    out["postrun"] = post
    out["flags"] = cell_flags(pre, post)
