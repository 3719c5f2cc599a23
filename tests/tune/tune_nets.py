"""A tiny seeded CNN as an ONNX file, and data for it, for the tuner's tests (no torch).

conv(3->6, 3x3) -> relu -> max_pool 2x2 -> conv(6->8, 3x3) -> relu -> flatten -> gemm(128->5):
three quantizable layers, a compile for cpu-int8 in a fraction of a second. The labels are the
float model's own predictions with every fifth one moved to the next class, so the float
model scores 80% and quantization errors show up as accuracy changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT = "x"
CLASSES = 5


def make_model(path: Path, batch: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)

    def init(name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
        w = (rng.standard_normal(shape) * scale).astype(np.float32)
        if w.ndim > 1:  # an outlier channel, so clipping and granularity matter
            w[0] *= 4.0
        return numpy_helper.from_array(w, name)

    inits = [
        init("w1", (6, 3, 3, 3), 0.4),
        init("b1", (6,), 0.1),
        init("w2", (8, 6, 3, 3), 0.3),
        init("b2", (8,), 0.1),
        init("w3", (5, 8 * 4 * 4), 0.2),
        init("b3", (5,), 0.1),
    ]
    conv = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", **conv),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", **conv),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tinycnn",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def samples(n: int, seed: int) -> np.ndarray:
    """(n, 3, 8, 8) inputs: smooth images plus noise, a few bright pixels (activation tails)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
    x += np.linspace(-1, 1, 8, dtype=np.float32)[None, None, :, None]
    x[:, :, 0, 0] *= 3.0
    return x


def float_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's outputs, one sample at a time (the model's batch is 1)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {INPUT: row[None]})[0] for row in x])


def labels_for(path: Path, x: np.ndarray) -> np.ndarray:
    y = float_logits(path, x).argmax(axis=1)
    y[::5] = (y[::5] + 1) % CLASSES
    return y.astype(np.int64)
