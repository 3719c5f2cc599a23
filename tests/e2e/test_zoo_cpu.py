"""The test zoo (torch modules with random weights, exported by both torch exporters)
compiles for `cpu` and matches onnxruntime within atol 1e-4 / rtol 1e-4; every imported graph
survives print -> parse."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import modelc
from modelc.frontend.onnx import load_onnx
from modelc.ir.parser import parse_graph
from modelc.ir.printer import print_graph

ZOO = ["mlp", "lenet", "resnet18", "mobilenetv2", "squeezenet"]


@pytest.mark.torch
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_matches_onnxruntime(zoo_model, name: str, dynamo: bool) -> None:
    import zoo

    path = zoo_model(name, dynamo=dynamo)
    graph = load_onnx(path)
    assert parse_graph(print_graph(graph, constants="inline")) == graph

    lib = modelc.compile(graph, target="cpu")
    x = zoo.example_input(name)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})
    got = lib(x)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_zoo_model_with_batchnorm_nodes(zoo_model, name: str) -> None:
    """Exported without constant folding, BatchNormalization stays a node of its own."""
    import zoo

    path = zoo_model(name, dynamo=False, fold=False)
    graph = load_onnx(path)
    assert any(n.op == "batch_norm" for n in graph.nodes)
    lib = modelc.compile(graph, target="cpu", verify=True)
    x = zoo.example_input(name)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(lib(x), want, atol=1e-4, rtol=1e-4)
