#!/usr/bin/env python3
"""Write config/README.md: every key of config/schema/config.schema.yaml with its type, default,
description and an example value from the shipped configs (config/*.yaml). Run after editing
the schema (`make config-docs`); tests/test_config_docs.py checks every key is documented."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

def load_schema() -> dict:
    """The schema file with each engine's settings (declared by its package) in `engines`."""
    sys.path.insert(0, str(ROOT))
    from quantbench.config_check import load_schema as full

    return full(str(SCHEMA))


SCHEMA = ROOT / "config" / "schema" / "config.schema.yaml"
HEAD = """# Configuration

`config/config.yaml` is the embedded demo (a tiny model, three quantizations, the Transformers
engine on CPU). Give your own with `snakemake --configfile my.yaml` (it replaces the demo, it is
not merged; several `--configfile`s merge, later ones winning) or, as a module, with
`module quantbench: ... config: config`. Every file is checked against
`config/schema/config.schema.yaml` before anything runs; defaults below are filled in there.
Shipped examples: `config/examples/quant_methods.yaml` (every quantization method),
`config/examples/served_gpu.yaml` (vLLM and SGLang on one GPU, with a capacity sweep and a
long-context engine instance) and `config/examples/qwen3_speed.yaml` (the published Qwen3 grid).

`<name>` stands for a name you choose (a model, quantization or engine entry); `[]` for a list item.
Generated from the schema by `tools/gen_config_readme.py` (`make config-docs`): edit the schema's
descriptions, not this table.

| key | type | default | description | example |
|---|---|---|---|---|
"""


def _resolve(node: dict, schema: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"].split("/")[1:]
        target = schema
        for part in ref:
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type(node: dict) -> str:
    if "enum" in node:
        return " | ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(_type(n) for n in node.get("oneOf", node.get("anyOf")))
    t = node.get("type", "")
    t = " or ".join(t) if isinstance(t, list) else t
    if t == "array" and isinstance(node.get("items"), dict) and "type" in node["items"]:
        t = f"list of {_type(node['items'])}"
    return t or "any"


def walk(node: dict, schema: dict, path: str = ""):
    """(key path, node) for every documented key."""
    node = _resolve(node, schema)
    for name, child in (node.get("properties") or {}).items():
        child = _resolve(child, schema)
        key = f"{path}.{name}" if path else name
        yield key, child
        yield from walk(child, schema, key)
    for sub in node.get("allOf", []):
        then = sub.get("then", {})
        for name, child in (then.get("properties") or {}).items():
            if name not in (node.get("properties") or {}):
                key = f"{path}.{name}" if path else name
                yield key, _resolve(child, schema)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and (extra.get("properties") or "$ref" in extra):
        yield from walk(extra, schema, f"{path}.<name>")
    items = node.get("items")
    if isinstance(items, dict) and (_resolve(items, schema).get("properties")):
        yield from walk(items, schema, f"{path}[]")


def _lookup(doc, parts):
    if not parts:
        yield doc
        return
    head, rest = parts[0], parts[1:]
    if head == "<name>" and isinstance(doc, dict):
        for value in doc.values():
            yield from _lookup(value, rest)
    elif head.endswith("[]"):
        inner = doc.get(head[:-2]) if isinstance(doc, dict) else None
        for item in inner or []:
            yield from _lookup(item, rest)
    elif isinstance(doc, dict) and head in doc:
        yield from _lookup(doc[head], rest)


def example(key: str, configs: list[dict]) -> str:
    parts = re.findall(r"<name>|[^.\[\]]+\[\]|[^.]+", key.replace("[]", "[]."))
    parts = [p for p in parts if p]
    merged = []
    for p in parts:
        if p.endswith("[]") or not (merged and merged[-1].endswith("[]") and p == ""):
            merged.append(p)
    for doc in configs:
        for value in _lookup(doc, merged):
            if isinstance(value, (dict,)):
                return ""
            text = json.dumps(value) if not isinstance(value, str) else value
            return f"`{text}`" if len(text) < 60 else f"`{text[:57]}…`"
    return ""


# Descriptions for keys the schema leaves undescribed (the schema's own text wins).
FALLBACK = {
    "models": "the models to quantize and measure, by a name of your choice",
    "models.<name>.revision": "hf: Hub revision (branch, tag or commit)",
    "models.<name>.seed": "tiny/dummy: seed of the random weights",
    "models.<name>.vocab_size": "tiny: vocabulary of the generated tokenizer",
    "quantizations": "the quantizations, by a name of your choice; `method` picks the rule",
    "quantizations.<name>.desc_act": "gptqmodel: activation order",
    "engines": "the serving engines, by name: transformers (in-process), vllm, sglang, openai",
    "engines.transformers": "Transformers in the benchmark job's own process",
    "engines.transformers.device": "auto: cuda when available, else cpu",
    "engines.transformers.dtype": "weights' dtype for unquantized layers",
    "engines.transformers.attn_implementation": "Transformers attention kernel",
    "engines.transformers.weights": "quantized weights kept packed (a cell whose weights are "
    "decompressed fails), dequantized at load, or either (path measured and reported)",
    "engines.vllm.device": "auto: cuda when available, else cpu (vLLM's CPU build)",
    "engines.sglang.device": "auto: cuda when available, else cpu",
    "engines.vllm.ready_timeout_s": "seconds to wait for the server's /health",
    "engines.sglang.ready_timeout_s": "seconds to wait for the server's /health",
    "engines.vllm.request_timeout_s": "seconds one request may take",
    "engines.sglang.request_timeout_s": "seconds one request may take",
    "engines.openai.request_timeout_s": "seconds one request may take",
    "engines.openai.base_url": "the server's URL, e.g. http://host:8000/v1",
    "engines.vllm.dtype": "--dtype", "engines.sglang.dtype": "--dtype",
    "engines.vllm.max_model_len": "--max-model-len",
    "engines.sglang.max_model_len": "--max-model-len",
    "engines.vllm.context_length": "SGLang's --context-length",
    "engines.sglang.context_length": "--context-length",
    "engines.vllm.gpu_memory_utilization": "--gpu-memory-utilization",
    "engines.sglang.gpu_memory_utilization": "vLLM's --gpu-memory-utilization",
    "engines.vllm.mem_fraction_static": "SGLang's --mem-fraction-static",
    "engines.sglang.mem_fraction_static": "--mem-fraction-static",
    "engines.vllm.tensor_parallel_size": "GPUs per server (--tensor-parallel-size / --tp)",
    "engines.sglang.tensor_parallel_size": "GPUs per server (--tp)",
    "engines.vllm.expert_parallel_size": "expert parallelism for MoE models",
    "engines.sglang.expert_parallel_size": "expert parallelism for MoE models (--ep)",
    "engines.vllm.load_format": "--load-format (dummy: random weights of the layout)",
    "engines.sglang.load_format": "--load-format (dummy: random weights of the layout)",
    "engines.vllm.chunked_prefill": "chunked prefill on/off",
    "engines.sglang.chunked_prefill": "chunked prefill on/off",
    "engines.vllm.mixed_chunk": "SGLang's --enable-mixed-chunk",
    "engines.sglang.mixed_chunk": "--enable-mixed-chunk",
    "engines.vllm.skip_tokenizer_init": "--skip-tokenizer-init (token ids in, token ids out)",
    "engines.sglang.skip_tokenizer_init": "--skip-tokenizer-init",
    "engines.vllm.tokenizer": "--tokenizer (a directory or Hub id)",
    "engines.sglang.tokenizer": "--tokenizer-path",
    "engines.vllm.cpu_kvcache_space_gib": "VLLM_CPU_KVCACHE_SPACE for vLLM's CPU build",
    "engines.sglang.cpu_kvcache_space_gib": "vLLM CPU only",
    "engines.vllm.extra_args": "more server arguments, verbatim",
    "engines.sglang.extra_args": "more server arguments, verbatim",
    "cells[].model": "a name from `models`", "cells[].quantization": "a name from `quantizations`",
    "cells[].engine": "a name from `engines`",
    "calibration": "calibration data for the methods that need it (GPTQ, AWQ, SmoothQuant)",
    "calibration.dataset": "a local text file (relative: the working directory's, else the "
                           "workflow's), or hf:<dataset id>",
    "calibration.split": "hf datasets: the split",
    "calibration.num_samples": "calibration sequences",
    "calibration.seq_len": "tokens per calibration sequence",
    "calibration.seed": "sampling seed",
    "benchmark": "what each cell's benchmark job measures, one result file per scenario",
    "benchmark.serving": "online serving at a request rate (vLLM's metric definitions)",
    "benchmark.serving.request_rate": "requests/s (Poisson); null: all at once",
    "benchmark.serving.max_concurrency": "most requests in flight; null: unbounded",
    "benchmark.serving.num_prompts": "measured requests",
    "benchmark.serving.input_len": "prompt tokens", "benchmark.serving.output_len": "output tokens",
    "benchmark.serving.range_ratio": "lengths drawn from ±this fraction around the given ones",
    "benchmark.serving.burstiness": "gamma shape of arrival gaps (1: Poisson)",
    "benchmark.serving.seed": "prompt and arrival seed",
    "benchmark.serving.slo_ms": "goodput: a request counts when under every given limit (ms)",
    "benchmark.serving.slo_ms.ttft": "time to first token limit",
    "benchmark.serving.slo_ms.tpot": "time per output token limit",
    "benchmark.serving.slo_ms.e2el": "end-to-end latency limit",
    "benchmark.engine_client.request_rate": "requests/s",
    "benchmark.engine_client.max_concurrency": "most requests in flight",
    "benchmark.engine_client.num_prompts": "measured requests",
    "benchmark.engine_client.input_len": "prompt tokens",
    "benchmark.engine_client.output_len": "output tokens",
    "benchmark.engine_client.seed": "prompt seed",
    "benchmark.batch": "fixed batches: latency and throughput per batch size",
    "benchmark.batch.batch_sizes": "batch sizes", "benchmark.batch.input_len": "prompt tokens",
    "benchmark.batch.output_len": "output tokens", "benchmark.batch.seed": "prompt seed",
    "benchmark.single": "batch 1 at each input length: speed, TTFT/TPOT and peak memory",
    "benchmark.single.input_lengths": "prompt lengths (tokens)",
    "benchmark.single.output_len": "generated tokens per request",
    "benchmark.single.repeats": "measured repeats per length (mean ± sd in the report)",
    "benchmark.single.warmup": "unmeasured requests first",
    "benchmark.single.seed": "prompt seed",
    "evaluation": "quality with lm-evaluation-harness, the same for every cell of a model",
    "evaluation.enabled": "evaluate at all", "evaluation.limit": "documents per task; null: all",
    "evaluation.seed": "lm-eval's seeds", "evaluation.batch_size": "in-process batch size",
    "evaluation.apply_chat_template": "format prompts with the model's chat template",
    "evaluation.thresholds.truncated_rate": "flag when more generations hit max_gen_toks",
    "evaluation.thresholds.unparsed_rate": "flag when more answers do not parse",
    "evaluation.alpha": "gate: significance level",
}


def _cell(text) -> str:
    return re.sub(r"\s+", " ", str(text)).replace("|", "\\|").strip()


def render() -> str:
    schema = load_schema()
    files = [ROOT / "config" / "config.yaml", *sorted((ROOT / "config").glob("*.yaml"))]
    configs = [yaml.safe_load(f.read_text()) or {} for f in dict.fromkeys(files)]
    rows = []
    for key, node in walk(schema, schema):
        default = json.dumps(node["default"]) if "default" in node else ""
        text = node.get("description") or FALLBACK.get(key, "")
        rows.append(
            f"| `{key}` | {_cell(_type(node))} | {_cell(default)} | "
            f"{_cell(text)} | {_cell(example(key, configs))} |"
        )
    return HEAD + "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    out = ROOT / "config" / "README.md"
    text = render()
    if "--check" in argv:
        return 0 if out.exists() and out.read_text() == text else 1
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
