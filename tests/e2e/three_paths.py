"""Compile one torch module three ways and check each against its oracle.

- `onnx-dynamo`: torch.onnx.export(dynamo=True) -> modelc's ONNX frontend; oracle onnxruntime
  on the same file.
- `onnx-legacy`: torch.onnx.export(dynamo=False, opset 17), the TorchScript exporter; oracle
  onnxruntime.
- `fx`: modelc.compile(module, example_inputs=...) through torch.export; oracle eager PyTorch.

Each path compiles for `cpu` and runs the built library, so the numerics contract (atol / rtol
1e-4) is checked on generated code, not only on the reference interpreter. Exports are cached
per process (the same-IR checks reuse them).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelc
from modelc.frontend.fx import load_torch
from modelc.frontend.onnx import load_onnx
from modelc.ir.graph import Graph

PATHS = ("onnx-dynamo", "onnx-legacy", "fx")
ATOL = RTOL = 1e-4
LEGACY_OPSET = 17

_EXPORTED: dict[tuple[str, bool], Path] = {}


def export_onnx(
    name: str,
    module: Any,
    args: tuple[Any, ...],
    input_names: Sequence[str],
    directory: Path,
    *,
    dynamo: bool,
) -> Path:
    """`module` exported to `directory/name-{dynamo,legacy}.onnx`, once per process."""
    import torch

    key = (name, dynamo)
    if key in _EXPORTED and _EXPORTED[key].exists():
        return _EXPORTED[key]
    path = directory / f"{name}-{'dynamo' if dynamo else 'legacy'}.onnx"
    options: dict[str, Any] = {"input_names": list(input_names), "dynamo": dynamo}
    if dynamo:
        options.update(external_data=False, verbose=False)
    else:
        options["opset_version"] = LEGACY_OPSET
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), args, str(path), **options)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    _EXPORTED[key] = path
    return path


def import_path(
    name: str,
    module: Any,
    args: tuple[Any, ...],
    input_names: Sequence[str],
    path: str,
    directory: Path,
) -> tuple[Graph, Path | None]:
    """The graph IR of `module` along `path`, and the ONNX file it came from (None for fx)."""
    if path == "fx":
        return load_torch(module, args), None
    onnx_file = export_onnx(
        name, module, args, input_names, directory, dynamo=path == "onnx-dynamo"
    )
    return load_onnx(onnx_file), onnx_file


def check_path(
    name: str,
    module: Any,
    args: tuple[Any, ...],
    input_names: Sequence[str],
    path: str,
    directory: Path,
) -> Graph:
    """Compile `module` along `path` for cpu and compare with that path's oracle."""
    import torch

    graph, onnx_file = import_path(name, module, args, input_names, path, directory)
    lib = modelc.compile(graph, target="cpu")
    feeds = {n: a.numpy() for n, a in zip(input_names, args)}
    got = lib.run(feeds)
    if onnx_file is None:
        with torch.no_grad():
            want = [t.numpy() for t in torch.utils._pytree.tree_leaves(module(*args))]
    else:
        ort = pytest.importorskip("onnxruntime")
        sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
        want = sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})
    assert len(got) == len(want), f"{len(got)} outputs, the oracle has {len(want)}"
    for (out, g), w in zip(got.items(), want):
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=RTOL, err_msg=f"{path}: output {out}")
    return graph
