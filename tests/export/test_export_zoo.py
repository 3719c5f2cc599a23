"""Zoo models exported to ONNX: float round trips, and quantized (QDQ) exports that onnxruntime
runs with the compiled cpu-int8 library's numbers.

Measured (64 seeded inputs, 32 calibration samples, int8 per-channel weights, minmax; AVX-512
VNNI CPU, onnxruntime 1.32), top-1 of onnxruntime on the exported file against the compiled
cpu-int8 library, and max |difference| of the outputs in output LSBs:

| model     | activations      | vs library | max diff | vs float model | ORT integer convs |
|-----------|------------------|------------|----------|----------------|-------------------|
| LeNet-5   | uint8 (default)  | 64/64      | 0        | 63/64          | 2/2, 3 QGemm      |
| LeNet-5   | int8             | 64/64      | 0        | 63/64          | 2/2, 3 QGemm      |
| ResNet-18 | uint8 (default)  | 64/64      | 0        | 55/64          | 20/20, 1 QGemm    |
| ResNet-18 | int8             | 62/64      | 6        | 57/64          | 9/20, 1 QGemm     |

With int8 activations onnxruntime converts a QuantizeLinear to uint8 only where it feeds one
DequantizeLinear, so the convs reading a residual block's input stay float (DQ -> Conv -> Q),
which rounds differently from an integer conv now and then. The bounds below keep margin for
CPUs whose integer kernels differ (onnxruntime's u8s8 kernels without VNNI can saturate).
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import modelc
from modelc.export import export_onnx, qdq_graph, write_qdq
from modelc.frontend.onnx import load_onnx

pytestmark = pytest.mark.torch

CALIBRATION = 32
EVAL = 64
# (model, activations) -> (least top-1 agreement with the library of EVAL, most output LSBs)
BOUNDS = {
    ("lenet", "uint8"): (63, 2),
    ("lenet", "int8"): (63, 2),
    ("resnet18", "uint8"): (63, 2),
    ("resnet18", "int8"): (60, 16),
}
MIN_FLOAT_AGREEMENT = {"lenet": 0.9, "resnet18": 0.8}  # as tests/e2e/test_cpu_int8.py pins
# The library is built without OpenMP here: in a process that imported torch, two OpenMP
# runtimes fight over the cores and the library runs ~8x slower (same results either way).
SERIAL = {"extra_cflags": ["-fno-openmp"]}


def session(path: Path | bytes, optimized: Path | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if optimized is not None:
        so.optimized_model_filepath = str(optimized)
    src = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def calibration(name: str) -> dict[str, np.ndarray]:
    import zoo

    xs = [zoo.example_input(name, seed=s) for s in range(CALIBRATION)]
    return {zoo.INPUT_NAME: np.concatenate(xs)}


@pytest.mark.parametrize(
    "name, dynamo, fold",
    [
        ("mlp", False, True),
        ("lenet", False, True),
        ("resnet18", False, True),
        ("squeezenet", False, True),
    ],
)
def test_float_round_trip(
    zoo_model: Callable[..., Path], tmp_path: Path, name: str, dynamo: bool, fold: bool
) -> None:
    import zoo

    path = zoo_model(name, dynamo=dynamo, fold=fold)
    out = export_onnx(load_onnx(path), tmp_path / "exported.onnx")
    ref, sess = session(path), session(out)
    for seed in range(3):
        x = {zoo.INPUT_NAME: zoo.example_input(name, seed)}
        np.testing.assert_allclose(sess.run(None, x)[0], ref.run(None, x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["lenet", "resnet18"])
def test_qdq_agrees_with_the_library(
    zoo_model: Callable[..., Path], tmp_path: Path, name: str
) -> None:
    import zoo

    path = zoo_model(name, dynamo=False)
    calib = calibration(name)
    graph, reports = qdq_graph(path, calibration=calib)
    lsb = next(
        float(n.attrs["scale"][0])
        for n in graph.nodes
        if n.op == "dequantize" and n.output.name in graph.outputs
    )
    convs = sum(n.op == "conv" for n in graph.nodes)
    lib = modelc.compile(path, target="cpu-int8", calibration=calib, **SERIAL)
    ref = session(path)
    xs = [zoo.example_input(name, seed) for seed in range(1000, 1000 + EVAL)]
    want = [lib(x) for x in xs]
    flt = [ref.run(None, {zoo.INPUT_NAME: x})[0] for x in xs]
    for activations in ("uint8", "int8"):
        out = write_qdq(graph, reports, tmp_path / f"{activations}.onnx", activations=activations)
        onnx.checker.check_model(onnx.load(str(out)), full_check=True)
        optimized = tmp_path / f"{activations}.optimized.onnx"
        sess = session(out, optimized)
        got = [sess.run(None, {zoo.INPUT_NAME: x})[0] for x in xs]
        agree = sum(int(np.argmax(g) == np.argmax(w)) for g, w in zip(got, want))
        agree_float = sum(int(np.argmax(g) == np.argmax(f)) for g, f in zip(got, flt))
        lsbs = [float(np.abs(g - w).max()) / lsb for g, w in zip(got, want)]
        ops = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
        print(
            f"{name} QDQ ({activations} activations) in onnxruntime: top-1 agreement with the "
            f"cpu-int8 library {agree}/{EVAL}, with the float model {agree_float}/{EVAL}; max "
            f"|diff| {max(lsbs):.2f} output LSBs (mean {np.mean(lsbs):.3f}); integer convs "
            f"{ops['QLinearConv']}/{convs}, QGemm {ops['QGemm']}"
        )
        least, most = BOUNDS[name, activations]
        assert agree >= least and max(lsbs) <= most, activations
        assert agree_float / EVAL >= MIN_FLOAT_AGREEMENT[name], activations
        assert ops["QLinearConv"] >= 1 and ops["QGemm"] >= 1  # integer kernels run
        if activations == "uint8":
            assert ops["QLinearConv"] == convs and ops["Conv"] == 0


# ---- an MLP and a small transformer encoder --------------------------------------------------


def _encoder() -> Any:
    import torch
    from torch import nn

    class Encoder(nn.Module):
        """One post-norm encoder layer (GELU feed-forward) and a classifier per token."""

        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(
                32, 4, 64, dropout=0.0, activation="gelu", batch_first=True
            )
            self.head = nn.Linear(32, 8)

        def forward(self, x: Any) -> Any:
            return self.head(self.layer(x))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Encoder().eval()


def _export_encoder(path: Path) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _encoder(),
            (torch.zeros(2, 8, 32),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
        )
    return path


@pytest.mark.parametrize("model", ["mlp", "encoder"])
def test_qdq_mlp_and_transformer(
    zoo_model: Callable[..., Path], tmp_path: Path, model: str
) -> None:
    """Matmul layers (QGemm / QLinearMatMul in onnxruntime) between float islands (layer norm,
    softmax, GELU): the exported model computes the library's outputs (measured: equal)."""
    import zoo

    if model == "mlp":
        path, shape = zoo_model("mlp", dynamo=False), zoo.INPUT_SHAPES["mlp"]
    else:
        path, shape = _export_encoder(tmp_path / "encoder.onnx"), (2, 8, 32)
    rng = np.random.default_rng(0)
    calib = {"input": rng.standard_normal((16, *shape)).astype(np.float32)}
    graph, reports = qdq_graph(path, calibration=calib)
    assert {"quantize", "dequantize", "matmul"} <= {n.op for n in graph.nodes}
    out = write_qdq(graph, reports, tmp_path / "qdq.onnx")
    lib = modelc.compile(path, target="cpu-int8", calibration=calib, **SERIAL)
    float_out = session(export_onnx(load_onnx(path), tmp_path / "float.onnx"))
    sess, ref = session(out), session(path)
    for seed in range(8):
        x = {"input": np.random.default_rng(100 + seed).standard_normal(shape, np.float32)}
        got = sess.run(None, x)[0]
        np.testing.assert_allclose(got, lib(x["input"]), atol=1e-5)
        np.testing.assert_allclose(float_out.run(None, x)[0], ref.run(None, x)[0], atol=1e-5)
