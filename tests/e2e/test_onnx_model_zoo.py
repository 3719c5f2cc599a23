"""The real architectures that ship inside the onnx wheel (onnx/backend/test/data/light):
AlexNet, DenseNet-121, Inception v1/v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512,
exported by another tool (Caffe2) at opset 9. Each one compiles for `cpu`, matches the output
stored next to it, and its graph survives print -> parse unchanged.

The stored outputs were produced by onnx's test runner on a deterministic input
(`arange(n) / n`, see onnx/backend/test/runner generate_dummy_data); we feed the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

import modelc
from modelc.frontend.onnx import load_onnx
from modelc.ir.parser import parse_graph
from modelc.ir.printer import print_graph

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = sorted(p.stem.removeprefix("light_") for p in LIGHT.glob("light_*.onnx"))


def dummy_input(shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def test_all_nine_models_present() -> None:
    assert len(MODELS) == 9, MODELS


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_light_model(name: str, tmp_path: Path) -> None:
    path = LIGHT / f"light_{name}.onnx"
    graph = load_onnx(path)
    # printer/parser round trip on the imported graph, weights included
    assert parse_graph(print_graph(graph, constants="inline")) == graph

    lib = modelc.compile(graph, target="cpu", output_dir=tmp_path / name)
    feeds = {t.name: dummy_input(t.shape) for t in lib.inputs}
    (got,) = lib.run(feeds).values()
    expected = onnx.numpy_helper.to_array(
        onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb"))
    )
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)

    m = lib.manifest
    assert m["workspace_lower_bound_bytes"] <= m["workspace_bytes"] < m["workspace_naive_bytes"]
