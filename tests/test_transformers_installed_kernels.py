"""Issue 21: on a machine without the Hub, Transformers' FP8 layers cannot fetch their kernel
(kernels-community/finegrained-fp8); the engine's `hub_kernels` setting hands Transformers an
installed module instead, which its kernel loader then returns. Wrong names fail before a load."""

import json
import sys
import types

import pytest
from transformers import Qwen3Config
from transformers.integrations import hub_kernels

from quantbench.engines.transformers import TransformersEngine
from quantbench.engines.transformers.installed_kernels import use_installed_kernels
from tests.test_transformers_layout import TINY


@pytest.fixture
def fake_kernel(monkeypatch):
    module = types.ModuleType("qb_test_fp8_kernel")
    monkeypatch.setitem(sys.modules, "qb_test_fp8_kernel", module)
    monkeypatch.setitem(hub_kernels._KERNEL_MODULE_MAPPING, "finegrained-fp8", None)
    return module


def test_transformers_loader_returns_the_installed_module(fake_kernel):
    used = use_installed_kernels({"finegrained-fp8": "qb_test_fp8_kernel"})
    assert "qb_test_fp8_kernel" in used["finegrained-fp8"]
    assert hub_kernels.lazy_load_kernel("finegrained-fp8") is fake_kernel


def test_the_engine_says_which_kernels_it_took(fake_kernel, tmp_path):
    """A dummy BF16 model loads with the setting; the startup facts name the module taken."""
    (tmp_path / "config.json").write_text(json.dumps(Qwen3Config.from_dict(TINY).to_dict()))
    settings = {"device": "cpu", "hub_kernels": {"finegrained-fp8": "qb_test_fp8_kernel"}}
    engine = TransformersEngine(settings)
    engine.load(str(tmp_path), has_weights=False)
    assert "finegrained-fp8: qb_test_fp8_kernel" in engine.startup_facts()["hub_kernels"]["value"]
    engine.close()


def test_on_cuda_transformers_own_fp8_loader_gets_it_or_the_gate_is_named(fake_kernel, monkeypatch):
    """Transformers 5.17 loads the FP8 kernel on CUDA only when the `kernels` package is in its
    pinned range: without it the setting fails before the load, naming the package and range;
    with it, the FP8 layers' own loader returns the installed kernel's functions."""
    from transformers.integrations import finegrained_fp8
    from transformers.utils.import_utils import KERNELS_MIN_VERSION, is_kernels_available

    fake_kernel.matmul_2d = fake_kernel.matmul_batched = fake_kernel.matmul_grouped = len
    setting = {"finegrained-fp8": "qb_test_fp8_kernel"}
    if not is_kernels_available():  # this suite's environment (pyproject.toml)
        gate = rf"`kernels` package.*kernels=={KERNELS_MIN_VERSION}"
        with pytest.raises(ImportError, match=gate):
            use_installed_kernels(setting, "cuda")
        assert use_installed_kernels(setting, "cpu")  # the CPU never calls that loader
        return
    use_installed_kernels(setting, "cuda")
    monkeypatch.setattr(finegrained_fp8, "_FINEGRAINED_FP8", None)  # its cached kernel, restored
    assert finegrained_fp8.load_finegrained_fp8_kernel().matmul is len


def test_an_unknown_kernel_name_or_a_missing_module_fails_by_name(fake_kernel):
    with pytest.raises(ValueError, match=r"hub_kernels: Transformers loads no kernel named 'fp9'"):
        use_installed_kernels({"fp9": "qb_test_fp8_kernel"})
    with pytest.raises(ImportError, match=r"hub_kernels.finegrained-fp8: module 'no_such_kernel'"):
        use_installed_kernels({"finegrained-fp8": "no_such_kernel"})


def test_the_engine_uses_them_before_loading_and_records_them(fake_kernel, tmp_path):
    settings = {"device": "cpu", "hub_kernels": {"finegrained-fp8": "no_such_kernel"}}
    engine = TransformersEngine(settings)
    spec = engine.launch_spec(str(tmp_path), False, "default", "x")
    assert spec["hub_kernels"] == {"finegrained-fp8": "no_such_kernel"}
    with pytest.raises(ImportError, match="no_such_kernel"):
        engine.load(str(tmp_path), has_weights=False)  # before any config is read
