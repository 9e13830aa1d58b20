"""Quantization methods, one registered class each (lm-eval style registry), found by looking:
every module of this package that defines a method registers it with
`@register_quant_method(name)`.

A method turns a BF16 checkpoint directory into a checkpoint directory an engine loads. Its class
declares, once, what the workflow reads before any job runs: the checkpoint *format* it writes
(the compatibility table's key), its config keys with their types (the schema of a
`quantizations.<name>` entry naming it), whether it is weightless, the environment its quantize
job runs in (tools/gen_envs.py), and for a format no engine declares, that format's compat rows.
Adding a method is a module here, a few-line rules/quantize_<method>.smk and a config entry
(docs/adding-a-quant.md).
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from quantbench.io import write_json
from quantbench.status import Status

QUANT_METHODS: dict[str, type[QuantMethod]] = {}
_discovered = False
# Where a method or a format's rows are declared, for the messages that ask for them.
DECLARE_METHOD = "quantbench/quant/<module>.py (@register_quant_method)"
DECLARE_FORMAT = (
    "`compat` on the quantization method's class (quantbench/quant/<module>.py) or on an engine "
    "that loads it (quantbench/engines/<engine>/)"
)


def register_quant_method(name: str):
    def wrap(cls):
        cls.name = name
        QUANT_METHODS[name] = cls
        return cls

    return wrap


def discover() -> dict[str, type[QuantMethod]]:
    """Import every module of this package; each method module registers its class."""
    global _discovered
    if not _discovered:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
        _discovered = True
    return QUANT_METHODS


def get_quant_method(name: str) -> type[QuantMethod]:
    try:
        return discover()[name]
    except KeyError:
        raise KeyError(
            f"unknown quantization method {name!r}; known: {sorted(QUANT_METHODS)} "
            f"(a method is declared in {DECLARE_METHOD})"
        ) from None


@dataclass(frozen=True)
class QuantEnv:
    """The conda environment a method's quantize job runs in (envs/<name>.yaml under
    `--sdm conda`), as tools/gen_envs.py writes it: core dependencies plus pyproject extras."""

    name: str
    extras: tuple[str, ...]
    comment: str
    python: str = "3.11"
    conda: tuple[str, ...] = ()


# The workflow's own environment (model, aggregate, the Transformers engine).
TRANSFORMERS_ENV = QuantEnv(
    "transformers",
    ("transformers",),
    "Model, serve/benchmark with the Transformers engine, aggregate, report.",
)


class QuantMethod:
    """A quantizer. Subclasses declare:

    - `format`: the checkpoint format it writes (a key of quantbench.compat); None when each
      config entry states its own (`format` is then one of its `settings`);
    - `settings`: its config keys besides `method`, `kernel` and `reference_quant`, as
      JSON-schema properties (type, enum, default, description), and `required_settings`;
    - `constraints`: JSON-schema clauses between its settings (a value allowed only with
      another's), checked at parse time with the settings;
    - `weightless`: it writes a layout without weights, which only a dummy model on an engine
      that builds the tensors itself runs;
    - `environment`: the QuantEnv its quantize job runs in;
    - `packages`: distributions whose versions shape its output (for the manifest);
    - `compat`: for a format no engine declares, its rows: format -> engine -> kernels (the
      default first), merged with the engines' in quantbench.compat.
    """

    name: ClassVar[str] = "base"  # set by @register_quant_method
    description: ClassVar[str] = ""
    format: ClassVar[str | None] = None
    settings: ClassVar[dict[str, dict]] = {}
    required_settings: ClassVar[tuple[str, ...]] = ()
    constraints: ClassVar[tuple[dict, ...]] = ()
    weightless: ClassVar[bool] = False
    environment: ClassVar[QuantEnv] = TRANSFORMERS_ENV
    packages: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    compat: ClassVar[dict[str, dict[str, tuple[str, ...]]]] = {}

    def __init__(self, params: dict):
        self.params = params

    @classmethod
    def calibrates(cls, params: dict) -> bool:
        """Whether quantizing with these parameters reads calibration samples."""
        return False

    def quantize(self, src: Path, dst: Path, calibration: dict) -> dict:
        """Write the quantized checkpoint into `dst`; return facts: scheme, weight_bits,
        group_size; `calibration` (what it used, None if data-free); `path` if the checkpoint is
        used in place instead of written to `dst`; `setup_seconds` spent on one-off tool set-up
        (not quantization time)."""
        raise NotImplementedError

    def versions(self) -> dict:
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for name in self.packages:
            try:
                out[name] = version(name)
            except PackageNotFoundError:
                out[name] = None
        return out


def entry_schemas() -> list[dict]:
    """One `if method is M then M's settings` clause per method, for the schema's
    `quantizations` entries: types, enums, defaults and required keys of each method's own
    settings (which keys it takes at all is checked by quantbench.plan)."""
    out = []
    for name, cls in sorted(discover().items()):
        then: dict = {"properties": dict(cls.settings)}
        if cls.required_settings:
            then["required"] = list(cls.required_settings)
        if cls.constraints:
            then["allOf"] = list(cls.constraints)
        is_method = {"properties": {"method": {"const": name}}, "required": ["method"]}
        out.append({"if": is_method, "then": then})
    return out


def compat_rows() -> dict[tuple[str, str], list[str]]:
    """(checkpoint format, engine) -> kernels, as the methods declare for their own formats."""
    return {
        (fmt, engine): list(kernels)
        for _, cls in sorted(discover().items())
        for fmt, engines in cls.compat.items()
        for engine, kernels in engines.items()
    }


def load_bf16_model(src: Path, seed: int = 0):
    """The checkpoint's weights, or for a dummy model (config only) random weights of its
    architecture, so quantized layouts can be produced without downloading weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if any(Path(src).glob("*.safetensors")) or any(Path(src).glob("*.bin")):
        return AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.bfloat16)


def has_weight_files(path: Path) -> bool:
    return any(Path(path).glob("*.safetensors")) or any(Path(path).glob("*.bin"))


def ensure_weights(src: Path, scratch: Path, seed: int = 0) -> Path:
    """`src` if it holds weights; else (a dummy model) random weights of its architecture saved
    into `scratch`, for tools that read weight files (llama.cpp's converter, GPTQModel)."""
    if has_weight_files(src):
        return Path(src)
    from transformers import AutoTokenizer

    load_bf16_model(src, seed).save_pretrained(scratch)
    AutoTokenizer.from_pretrained(src).save_pretrained(scratch)
    return Path(scratch)


def dir_size_bytes(path: Path) -> int:
    # is_file()/stat() follow symlinks: a Hub snapshot's files count at their blobs' size.
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def bf16_size_bytes(src: Path) -> tuple[int, str]:
    """The BF16 checkpoint's size, the compression ratio's denominator: measured when the model
    has weights; for a dummy model (config only) 2 bytes per parameter plus its other files."""
    if has_weight_files(src):
        return dir_size_bytes(src), "bf16 checkpoint size on disk"
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src))
    params = sum(p.numel() for p in model.parameters())
    return 2 * params + dir_size_bytes(src), "2 bytes x parameter count (dummy model)"


def run_quantization(
    method: QuantMethod,
    model_manifest: dict,
    out_dir: Path,
    calibration: dict,
    provenance: dict,
    fmt: str,
) -> dict:
    """Quantize into a temporary directory and rename it into place, so a failed or interrupted
    run never leaves a checkpoint that looks finished; then write the manifest."""
    src = Path(model_manifest["path"])
    final = out_dir / "checkpoint"
    tmp = out_dir / ".checkpoint.partial"
    for stale in (tmp, final):
        if stale.exists():
            shutil.rmtree(stale)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    facts = method.quantize(src, tmp, calibration)
    # One-off tool set-up (building llama.cpp's quantizer) is reported apart.
    seconds = time.perf_counter() - start - facts.get("setup_seconds", 0.0)
    if facts.get("path") is None:  # methods that wrote a new checkpoint
        tmp.rename(final)
        facts["path"] = str(final)
    elif tmp.exists():  # used in place: drop any scratch
        shutil.rmtree(tmp)
    base_size, base_method = bf16_size_bytes(src)
    # A weightless layout (method `layout`) has no size on disk to compare.
    size = None if facts.get("weightless") else dir_size_bytes(Path(facts["path"]))
    manifest = {
        "status": Status.OK,
        "method": method.name,
        "format": fmt,
        "scheme": None,
        "weight_bits": None,
        "group_size": None,
        "calibration": None,
        **facts,
        "size_bytes": size,
        "bf16_size_bytes": base_size,
        "bf16_size_method": base_method,
        "compression_ratio": base_size / size if size else None,
        "quantize_seconds": seconds,
        "tool_versions": method.versions(),
        "model": model_manifest,
        "provenance": provenance,
    }
    write_json(out_dir / "quant.json", manifest)
    return manifest
