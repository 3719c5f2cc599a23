"""The zoo itself is sound: every model exports with both torch exporters, passes the ONNX
checker, and onnxruntime reproduces torch's output. Compiler tests compare against onnxruntime,
so a broken zoo would make them meaningless."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from zoo import INPUT_NAME, INPUT_SHAPES, OUTPUT_NAME, ZOO, example_input

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_exports_and_runs(
    name: str, dynamo: bool, zoo_model: Callable[..., Path]
) -> None:
    import torch

    path = zoo_model(name, dynamo=dynamo)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    assert not list(path.parent.glob(f"{path.name}.data")), "weights must live inside the file"

    x = example_input(name)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {INPUT_NAME: x})
    with torch.no_grad():
        want = ZOO[name]()(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # Outputs of order one: a 1e-4 tolerance against them is a real test.
    assert 0.1 < float(np.abs(want).max()) < 100


def test_batchnorm_kept_without_folding(zoo_model: Callable[..., Path]) -> None:
    ops = {n.op_type for n in onnx.load(zoo_model("resnet18", dynamo=False, fold=False)).graph.node}
    assert "BatchNormalization" in ops


def test_builders_are_deterministic() -> None:
    import torch

    a, b = ZOO["mobilenetv2"](), ZOO["mobilenetv2"]()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka


def test_example_input_is_seeded() -> None:
    for name, shape in INPUT_SHAPES.items():
        x = example_input(name)
        assert x.shape == shape and x.dtype == np.float32
        np.testing.assert_array_equal(x, example_input(name))
