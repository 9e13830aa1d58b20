"""Kernels Transformers fetches from the Hub at first use (`kernels-community/finegrained-fp8`
for every FP8 linear layer on CUDA, through the `kernels` package), taken from installed Python
packages instead: for machines that cannot reach the Hub, where the FP8 forward would otherwise
fail. The engine's `hub_kernels` setting names them ({kernel name: module}); with none set,
Transformers downloads as usual. On CUDA Transformers 5.17 calls its loader only where the
`kernels` package is installed, in the version range it pins, even for a kernel it then takes
from here: on the H100 (2026-12-07) every FP8 cell failed at its first forward without it."""

from __future__ import annotations

import importlib


def use_installed_kernels(kernels: dict[str, str], device: str = "cpu") -> dict[str, str]:
    """Hand each named kernel's installed module to Transformers' kernel loader; returns where
    each came from (the engine's startup facts). A name Transformers does not load, a module
    that does not import, or (on CUDA) no `kernels` package for Transformers' gate fails here,
    before the model loads."""
    if not kernels:
        return {}
    from transformers.integrations import hub_kernels
    from transformers.utils import import_utils

    if str(device).startswith("cuda") and not import_utils.is_kernels_available():
        low, high = import_utils.KERNELS_MIN_VERSION, import_utils.KERNELS_MAX_VERSION
        raise ImportError(
            f"hub_kernels: Transformers calls its kernel loader on CUDA only with the `kernels` "
            f"package installed ({low} <= version < {high}); install kernels=={low} "
            "(it downloads nothing when the kernels come from here) or drop the setting"
        )

    known = hub_kernels._HUB_KERNEL_MAPPING  # the names lazy_load_kernel() resolves
    used = {}
    for name, module_name in kernels.items():
        if name not in known:
            raise ValueError(
                f"hub_kernels: Transformers loads no kernel named {name!r} "
                f"(it knows {sorted(known)})"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ImportError(
                f"hub_kernels.{name}: module {module_name!r} is not installed ({err}); install "
                f"the kernel ({known[name]['repo_id']}) as a package or drop the setting"
            ) from err
        # lazy_load_kernel() returns a module found here before it asks the Hub
        hub_kernels._KERNEL_MODULE_MAPPING[name] = module
        used[name] = f"{module_name} ({getattr(module, '__file__', '?')})"
    return used
