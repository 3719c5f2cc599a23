"""`quantize{bias_correction=true}`: the corrected bias against a numpy reference (the mean over
the calibration set of the float layer minus the layer with quantized weights, padding
included), a smaller mean output error with 4-bit weights, and biases made where none were."""

from __future__ import annotations

import numpy as np
import pytest

from modelc.ir import dtypes as D
from modelc.ir.attrs import Attrs
from modelc.ir.graph import Graph, GraphBuilder
from modelc.ir.interpreter import run_graph
from modelc.ir.opdef import get_op
from modelc.ir.types import TensorType
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline

FOLD = "fold-qdq,fold-constants,eliminate-dead-code"
CONV = {"pads": [1] * 4, "strides": [1, 1], "dilations": [1, 1]}


def net(op: str, bias: bool) -> Graph:
    """x -> conv 4->6 3x3 pad 1 (or matmul 16->6) [+ bias] -> y."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("one", fold=False)
    if op == "conv":
        x = b.add_input("x", TensorType((1, 4, 5, 5), D.f32))
        w = b.add_constant(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "w")
        ins = [x, w]
        if bias:
            ins.append(b.add_constant(rng.standard_normal(6).astype(np.float32), "b"))
        y = b.add("conv", *ins, loc="layer", **CONV)
    else:
        x = b.add_input("x", TensorType((3, 16), D.f32))
        w = b.add_constant(rng.standard_normal((16, 6)).astype(np.float32), "w")
        y = b.add("matmul", x, w, loc="layer")
        if bias:
            bc = b.add_constant(rng.standard_normal(6).astype(np.float32), "b")
            y = b.add("add", y, bc, loc="layer_bias")
    b.set_outputs([y])
    return b.build()


def calibration(graph: Graph, n: int = 16) -> dict[str, np.ndarray]:
    """Inputs with a mean far from 0 per channel (what makes the weights' error biased)."""
    rng = np.random.default_rng(1)
    shape = graph.inputs[0].type.shape
    channel_means = rng.uniform(0.5, 2.0, shape[1]).reshape([1, -1] + [1] * (len(shape) - 2))
    xs = rng.standard_normal((n, *shape)) * 0.5 + channel_means
    return {"x": xs.astype(np.float32)}


def quantize(graph: Graph, data: dict, correct: bool) -> tuple[Graph, PassContext]:
    spec = f"quantize{{weight_bits=4,per_channel=false,bias_correction={str(correct).lower()}}}"
    ctx = PassContext(verify=True, calibration=data)
    return run_pipeline(graph, parse_pipeline(spec), ctx), ctx


def dq(q: Graph, prefix: str) -> np.ndarray:
    """The float value of the dequantized constant whose name starts with `prefix`."""
    (n,) = [n for n in q.nodes if n.op == "dequantize" and n.inputs[0].startswith(prefix)]
    data = q.constant_map[n.inputs[0]].data
    return get_op("dequantize").evaluate([data], n.attrs, (n.output.type,))[0].astype(np.float64)


def reference_shift(op: str, w: np.ndarray, wq: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """E over samples and positions of (W - Wq) applied to x: the layer run with the weight
    error as its weight (the op's own reference, so padding reads zeros as it really does)."""
    node_attrs = get_op("conv").check_attrs(Attrs(CONV), loc="")
    outs = []
    for x in xs:
        if op == "conv":
            t = get_op("conv").infer_types(
                [TensorType(x.shape, D.f32), TensorType(w.shape, D.f32)], node_attrs, loc=""
            )
            y = get_op("conv").evaluate([x, (w - wq).astype(np.float32)], node_attrs, t)[0]
            outs.append(y.astype(np.float64).mean(axis=(0, 2, 3)))
        else:
            outs.append((x.astype(np.float64) @ (w - wq)).mean(axis=0))
    return np.mean(outs, axis=0)


@pytest.mark.parametrize("op", ["conv", "matmul"])
@pytest.mark.parametrize("bias", [True, False])
def test_corrected_bias_matches_reference(op: str, bias: bool) -> None:
    g = net(op, bias)
    data = calibration(g)
    q, ctx = quantize(g, data, correct=True)
    w = g.constant_map["w"].data.astype(np.float64)
    wq = dq(q, "w.int4")
    b = g.constant_map["b"].data.astype(np.float64) if bias else np.zeros(6)
    want = b + reference_shift(op, w, wq, data["x"])
    got = dq(q, "b.int32" if bias else "w.bias.int32")
    (bdq,) = [n for n in q.nodes if n.op == "dequantize" and "int32" in n.inputs[0]]
    step = max(bdq.attrs["scale"])
    assert np.abs(got - want).max() <= step / 2 + 1e-9
    row = ctx.reports["quantize"]["layers"]["layer"]
    assert row["bias_shift_max"] == pytest.approx(np.abs(want - b).max(), rel=1e-5)
    folded = run_pipeline(q, parse_pipeline(FOLD), PassContext(verify=True))
    ops = [n.op for n in folded.nodes]
    assert ops.count("qconv" if op == "conv" else "qmatmul") == 1 and op not in ops
    assert q.outputs == g.outputs


@pytest.mark.parametrize("op", ["conv", "matmul"])
def test_correction_shrinks_mean_output_error(op: str) -> None:
    g = net(op, bias=True)
    data = calibration(g)
    y = g.outputs[0]
    float_out = np.stack([run_graph(g, {"x": x})[y] for x in data["x"]]).astype(np.float64)
    axes = (0, 1, 3, 4) if op == "conv" else (0, 1)  # all but the output channel
    mean_error = {}
    for correct in (False, True):
        q, _ = quantize(g, data, correct)
        out = np.stack([run_graph(q, {"x": x})[y] for x in data["x"]]).astype(np.float64)
        mean_error[correct] = np.abs((out - float_out).mean(axis=axes)).mean()
    assert mean_error[True] < 0.5 * mean_error[False]


def test_zero_bias_inserted_only_when_asked() -> None:
    g = net("matmul", bias=False)
    q, _ = quantize(g, calibration(g), correct=False)
    assert "add" not in [n.op for n in q.nodes]
    q, _ = quantize(g, calibration(g), correct=True)
    adds = [n for n in q.nodes if n.op == "add"]
    assert len(adds) == 1 and adds[0].loc == "layer.bias"
