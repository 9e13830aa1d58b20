"""Hugging Face Transformers, in-process: batch 1, greedy, exactly N new tokens, one timestamp
per generated token (taken when generate() hands the token to the streamer, after the device
sync that `.cpu()` implies)."""

from __future__ import annotations

import time
from pathlib import Path

from quantbench.engines import register_engine
from quantbench.engines.base import InProcessEngine
from quantbench.engines.transformers import layout_weights
from quantbench.engines.transformers import weights as w
from quantbench.engines.transformers.installed_kernels import use_installed_kernels
from quantbench.memory import PeakMemory
from quantbench.metrics import RequestRecord


class _TokenClock:
    """A generate() streamer that only timestamps: the first put() is the prompt. The first
    generated token calls `on_first_token` (prefill is over), the `expected`-th calls
    `on_last_token` (generate() still holds the KV cache then)."""

    def __init__(self, on_first_token=lambda: None, on_last_token=lambda: None, expected=0):
        self.times: list[float] = []
        self._seen_prompt = False
        self._on_first_token = on_first_token
        self._on_last_token = on_last_token
        self._expected = expected

    def put(self, value):
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self.times.append(time.perf_counter())
        if len(self.times) == 1:
            self._on_first_token()
        if len(self.times) == self._expected:
            self._on_last_token()

    def end(self):
        pass


def fill_generation_cache(model, ids, output_len: int, chunk: int, on_prefill_done=None):
    """The KV cache generate() holds when it emits token `output_len` of a batch-1 greedy run:
    the prompt prefilled in one pass (logits of its last position only, as generate() does),
    then output_len - 1 tokens appended `chunk` at a time. Token values change no tensor's
    size, so the greedy token is repeated rather than decoded."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    if on_prefill_done is not None:
        on_prefill_done()
    token = out.logits[:, -1:].argmax(-1)
    del out
    left = output_len - 1
    while left > 0:
        n = min(chunk, left)
        out = model(
            input_ids=token.expand(1, n), past_key_values=cache, use_cache=True, logits_to_keep=1
        )
        token = out.logits[:, -1:].argmax(-1).to(torch.long)
        del out
        left -= n
    return cache


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _reserve_for_weights(nbytes: int, device: str) -> None:
    """Let the allocator take the weights' bytes as one block, then free it, as from_pretrained
    does before loading (Transformers' caching-allocator warm-up): the parameters are then cut
    from that one cached segment. Allocated one by one instead, each tensor whose size is not a
    multiple of 2 MiB gets a segment of its own and holds the remainder too (under 1 MiB is not
    split off): 54 MiB more for Qwen3-4B, whose 2560 x 9728 MLP matrices are 47.5 MiB each, in
    every memory figure of a random-weight model. `nbytes`: weights.dense_bytes."""
    import torch

    if torch.device(device).type != "cuda":
        return
    torch.empty(nbytes, dtype=torch.uint8, device=device)  # freed at once


@register_engine("transformers")
class TransformersEngine(InProcessEngine):
    description = "Hugging Face Transformers in this process (generate(), batch 1)"
    packages = ("transformers",)
    settings = {
        "device": {"type": "string", "pattern": "^(auto|cpu|cuda(:[0-9]+)?)$", "default": "auto"},
        "dtype": {
            "type": "string",
            "enum": ["bfloat16", "float16", "float32"],
            "default": "bfloat16",
        },
        "attn_implementation": {
            "type": "string",
            "enum": ["sdpa", "eager", "flash_attention_2"],
            "default": "sdpa",
        },
        # Packed: a quantized checkpoint whose weights are decompressed (measured after a
        # forward pass) fails the cell, since its memory would be the dense model's.
        "weights": {"type": "string", "enum": list(w.WEIGHTS_MODES), "default": w.PACKED},
        # Kernels Transformers would fetch from the Hub, from installed packages (offline
        # machines): {kernel name: module}, e.g. {finegrained-fp8: finegrained_fp8}.
        "hub_kernels": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "default": {},
            "description": "kernels Transformers fetches from the Hub, taken from installed "
            "packages instead (machines without the Hub): {kernel: module}, e.g. "
            "{finegrained-fp8: finegrained_fp8}; on CUDA with the `kernels` package installed "
            "too (0.16.x for Transformers 5.17), which then downloads nothing",
        },
    }
    # The quantizer from_pretrained picks from the checkpoint: compressed-tensors keeps FP8
    # packed on FP8 kernels (CUDA SM89+) and otherwise decompresses on the first forward; fp8
    # dequantizes to BF16 without a GPU; awq needs `gptqmodel` and gptq both `gptqmodel` and
    # `optimum` in the engine's environment; gguf loads with `gguf_file=` and dequantizes to
    # the load dtype. See weights.py for how the path is told.
    weightless = True  # fills the layouts of layout_weights.FORMATS with random tensors
    weightless_formats = layout_weights.FORMATS
    compat = {
        "bf16": ("none",),
        "compressed-tensors": ("compressed-tensors",),
        "fp8": ("fp8",),
        "awq": ("awq",),
        "gptq": ("gptq",),
        "gguf": ("gguf",),
    }

    def __init__(self, settings: dict):
        import torch

        super().__init__(settings)
        self.device = resolve_device(settings.get("device", "auto"))
        self.dtype = getattr(torch, settings.get("dtype", "bfloat16"))
        self.memory = PeakMemory(self.device)
        self.model = None
        self.weights_mode = settings.get("weights", w.PACKED)
        self.weight_facts: dict = {}
        self.kernels_used: dict = {}

    def launch_spec(self, checkpoint: str, has_weights: bool, kernel: str, name: str) -> dict:
        return {
            "engine": "transformers",
            "in_process": True,
            "checkpoint": checkpoint,
            "weights": "checkpoint" if has_weights else "random (from config)",
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "attn_implementation": self.settings.get("attn_implementation", "sdpa"),
            "kernel": kernel,
            "weights_mode": self.weights_mode,
            "hub_kernels": self.settings.get("hub_kernels") or {},
        }

    def load(self, checkpoint: str, has_weights: bool, seed: int = 0) -> float:
        """Load the model; returns seconds spent."""
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        start = time.perf_counter()
        self.kernels_used = use_installed_kernels(
            self.settings.get("hub_kernels") or {}, self.device
        )
        attn = self.settings.get("attn_implementation", "sdpa")
        config = AutoConfig.from_pretrained(checkpoint)
        method = w.quant_method(checkpoint)  # a dummy model's layout (method `layout`) has one too
        layout = not has_weights and method is not None
        # the weight check's yardstick, and the reserve: a layout's architecture as it holds it
        shape = layout_weights.dense_config(config) if layout else config
        dense = w.dense_bytes(shape, self.dtype)
        on_disk = w.checkpoint_bytes(checkpoint) if has_weights else 0
        if has_weights:
            # A GGUF checkpoint is dequantized on load; its config.json beside it gives the
            # architecture (Transformers' qwen3 GGUF reader assumes head_dim 128).
            ggufs = sorted(Path(checkpoint).glob("*.gguf"))
            gguf = {"gguf_file": ggufs[0].name, "config": config} if ggufs else {}
            self.model = AutoModelForCausalLM.from_pretrained(
                checkpoint,
                dtype=self.dtype,
                attn_implementation=attn,
                device_map=self.device,
                **gguf,
                **w.load_kwargs(method, self.weights_mode),
            )
        elif layout:  # a weightless layout: random tensors in its format
            state = layout_weights.random_state_dict(config, self.dtype, seed, self.device)
            on_disk = sum(t.nbytes for t in state.values())  # what its checkpoint would hold
            self.model, info = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)].from_pretrained(
                None,
                config=config,
                state_dict=state,
                dtype=self.dtype,
                attn_implementation=attn,
                device_map=self.device,
                output_loading_info=True,
                **w.load_kwargs(method, self.weights_mode),
            )
            # Emptied, not just dropped: something in from_pretrained keeps its frame, and so the
            # dict, alive; where a tensor was cast on load (AWQ to float16 on CUDA) the original
            # then stayed on the GPU (two embedding matrices over the H100's AWQ cells, 2026-12-07).
            state.clear()
            layout_weights.check_loaded(info, config)
            on_disk += layout_weights.fill_packed(self.model, config, seed)
        else:  # a dummy model: the real architecture with random weights
            torch.manual_seed(seed)
            _reserve_for_weights(dense, self.device)
            with torch.device(self.device):
                model = AutoModelForCausalLM.from_config(
                    config, dtype=self.dtype, attn_implementation=attn
                )
            # from_config may materialise on the CPU whatever the default device: move it.
            self.model = model.to(self.device)
        placed = {p.device.type for p in self.model.parameters()}
        if placed != {torch.device(self.device).type}:
            raise RuntimeError(f"model parameters on {placed}, expected {self.device}")
        self.model.eval()
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)
        self._check_weights(method, on_disk, dense)
        return time.perf_counter() - start

    @property
    def load_path(self) -> str | None:
        """In which form the weights sit (weights.decide_path), once loaded."""
        return (self.weight_facts.get("weights_load_path") or {}).get("value")

    def _check_weights(self, method: str | None, on_disk: int, dense: int) -> None:
        """Measure in which form the weights sit once a forward pass has run (what the
        requests see), keep the facts, and fail where that is not the form asked for."""
        sizes = {"held_at_load": w.held_bytes(self.model)}
        if method is not None:  # the forward only matters where a quantizer may decompress
            w.first_forward(self.model)
        sizes["held"] = w.held_bytes(self.model)
        sizes["checkpoint"] = on_disk
        sizes["dense"] = dense
        path = w.decide_path(method, sizes["held"], sizes["checkpoint"], sizes["dense"])
        classes = w.linear_classes(self.model)
        self.weight_facts = w.weight_facts(self.weights_mode, method, path, sizes, classes)
        try:
            w.check_path(self.weights_mode, method, path, sizes)
        except w.WeightsPathError:
            self.close()  # the session never opens: free the model here
            raise

    def startup_facts(self) -> dict:
        """In which form the weights are and what they hold (weights.py); on the GPU also what
        the model holds before any request: the base every memory figure stands on (the
        published cells read as weights + KV cache + a constant)."""
        facts = dict(self.weight_facts)
        if self.kernels_used:  # Hub kernels taken from installed packages (hub_kernels)
            facts["hub_kernels"] = {
                "value": "; ".join(f"{k}: {v}" for k, v in self.kernels_used.items()),
                "method": "the engine's hub_kernels setting (installed_kernels.py)",
            }
        held = self.memory.held_mb()
        if held is None:
            return facts
        return {
            **facts,
            "weights_gib": {
                "value": held / 1024,
                "unit": "GiB",
                "method": "torch.cuda.memory_allocated after load (and, for a quantized "
                "checkpoint, one forward pass)",
            },
        }

    def generate(self, prompt_ids: list[int], output_len: int) -> tuple[RequestRecord, dict]:
        """One batch-1 greedy request producing exactly `output_len` tokens; returns the record
        and the memory figures over it."""
        import torch

        ids = torch.tensor([prompt_ids], device=self.device)
        clock = _TokenClock(
            on_first_token=self.memory.mark_prefill_done,
            on_last_token=self.memory.mark_last_token,
            expected=output_len,
        )
        self.memory.reset()
        with torch.inference_mode():
            send = time.perf_counter()
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=output_len,
                min_new_tokens=output_len,  # suppresses EOS: exactly N tokens
                do_sample=False,
                streamer=clock,
                pad_token_id=self.model.generation_config.pad_token_id or 0,
            )
        record = RequestRecord(
            send_time=send,
            token_times=clock.times,
            prompt_tokens=len(prompt_ids),
            output_tokens=int(out.shape[1] - ids.shape[1]),
            finish_reason="length",
            cached_tokens=0,  # generate() builds a new KV cache for every call: nothing reused
        )
        # Each row says in which form the weights were: a decompressed load's memory is marked.
        return record, {**self.memory.read(), "weights_load_path": self.load_path}

    def generation_memory(self, prompt_ids: list[int], output_len: int, chunk: int) -> dict:
        """What a batch-1 greedy generate() of `output_len` tokens holds at its last token (the
        published Transformers memory column), reached in `output_len / chunk` forward passes
        instead of `output_len` (decode is launch-bound: 170 s for 2048 tokens of Qwen3-0.6B on
        the lent H100's host). The prompt is prefilled as generate() prefills it, then the
        output_len - 1 tokens whose keys and values generate() caches before emitting its last
        one are fed `chunk` at a time: the cache ends with the same tensors of the same sizes
        (fill_generation_cache), so `end_mem_mb` is generate()'s. Only prefill's peak is a
        peak of generate(); the chunks' own peak is not, and is not reported."""
        import torch

        ids = torch.tensor([prompt_ids], device=self.device)
        self.memory.reset()
        with torch.inference_mode():
            cache = fill_generation_cache(
                self.model, ids, output_len, chunk, on_prefill_done=self.memory.mark_prefill_done
            )
            self.memory.mark_last_token()
            cached = cache.get_seq_length()
        del cache
        read = self.memory.read()
        out = {
            "kv_tokens": int(cached),
            "cached_tokens": 0,  # a new cache for every call: nothing reused
            "mem_method": read["mem_method"],
            "weights_load_path": self.load_path,
        }
        if self.memory.cuda:
            out["end_mem_mb"] = read.get("end_mem_mb")
            out["end_mem_method"] = read.get("end_mem_method")
            out["prefill_peak_mem_mb"] = self.memory.prefill_peak_mb
        else:  # the process's peak RSS over the whole path: no figure of generate() itself
            out["peak_mem_mb"] = read["peak_mem_mb"]
        return out

    def release(self) -> None:
        """Free cached allocator blocks (after an OOM) so the next cell starts clean."""
        self.memory.release()

    def close(self) -> None:
        self.model = None
        self.memory.release()
