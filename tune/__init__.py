"""Quantune-style automatic tuning of post-training quantization (see docs/tuning.md).

    result = modelc.tune("model.onnx", calibration="calib.npz", eval_data="eval.npz")

The package itself is callable: `modelc.tune(...)` is `modelc.tune.api.tune(...)`. A plain
function named `tune` on the `modelc` package would shadow this package, and then
`import modelc.tune.runner as r` (or a monkeypatch of "modelc.tune.runner.x") would resolve
`runner` on the function and fail. A callable module keeps both spellings working, and stays
light: the tuner's modules are imported on the first call.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from modelc.tune.api import tune

        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

_LAZY = {
    "tune": "modelc.tune.api",
    "TuneResult": "modelc.tune.api",
    "load_prior": "modelc.tune.log",
    "get_space": "modelc.tune.space",
}


def __getattr__(name: str) -> Any:
    """`from modelc.tune import TuneResult` without importing the tuner up front."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
