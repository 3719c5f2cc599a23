"""The test zoo: small, seeded, real-architecture models exported to ONNX by torch.

    from zoo import ZOO, example_input, export
    net = ZOO["resnet18"]()                       # eval-mode torch.nn.Module
    export("resnet18", tmp / "r.onnx", dynamo=True)
    x = example_input("resnet18")                 # float32 array of the model's input shape

Tests normally take exported files from the `zoo_model` fixture (conftest.py), which exports
each (model, exporter) pair once per test session.

Both torch exporters work in torch 2.13 and produce different graphs of the same model, so both
are worth compiling: `dynamo=True` (the default since torch 2.9; torch.export + onnxscript,
opset 18+, tidy names) and `dynamo=False` (the deprecated TorchScript exporter; opset 17-style
graphs with `Identity` nodes and numbered value names, like many ONNX files in the wild).
With `fold=True` (default) both exporters fold eval-mode BatchNorm into the preceding Conv;
`fold=False` keeps `BatchNormalization` nodes in the graph.

Importing this module needs no torch; building or exporting a model does.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "mlp": (4, 64),
    "lenet": (1, 1, 28, 28),
    "resnet18": (1, 3, 64, 64),
    "mobilenetv2": (1, 3, 64, 64),
    "squeezenet": (1, 3, 64, 64),
}

# Every exported model has one input and one output with these names.
INPUT_NAME = "input"
OUTPUT_NAME = "output"
# Opset for the legacy exporter; the dynamo exporter picks its own (18 or newer).
LEGACY_OPSET = 17


def _lazy(name: str) -> Callable[[], Any]:
    """A builder that imports torch (through zoo_nets) only when called."""

    def build() -> Any:
        return getattr(importlib.import_module("zoo_nets"), name)()

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"Build the zoo's {name} as an eval-mode torch.nn.Module with seeded weights."
    return build


ZOO: dict[str, Callable[[], Any]] = {name: _lazy(name) for name in INPUT_SHAPES}


def example_input(name: str, seed: int = 0) -> np.ndarray:
    """A seeded standard-normal float32 input of the model's input shape."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(INPUT_SHAPES[name]).astype(np.float32)


def export(
    name: str, path: str | os.PathLike[str], dynamo: bool = True, *, fold: bool = True
) -> Path:
    """Export the zoo model `name` to the ONNX file `path` (weights inside the file) and return
    the path. Exporter noise (deprecation warnings, progress lines) is silenced: tests print it
    otherwise for every model."""
    import torch

    path = Path(path)
    net = ZOO[name]()
    args = (torch.from_numpy(example_input(name)),)
    common: dict[str, Any] = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    with warnings.catch_warnings(), _quiet_torch_logs():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(
                net,
                args,
                str(path),
                dynamo=True,
                external_data=False,
                optimize=fold,
                verbose=False,
                **common,
            )
        else:
            torch.onnx.export(
                net,
                args,
                str(path),
                dynamo=False,
                opset_version=LEGACY_OPSET,
                do_constant_folding=fold,
                **common,
            )
    return path


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """Raise torch's exporter loggers to ERROR for the duration (they warn that torchvision is
    missing, once per export)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
