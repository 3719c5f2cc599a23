"""`quantize{rounding=gptq}`: the patch view of a layer's input against the conv reference, GPTQ
against an independent numpy transcription of Optimal Brain Quantization's sequential updates,
and on layers of the pass: lower output error than round-to-nearest, on the same integer grid."""

from __future__ import annotations

import numpy as np
import pytest

from modelc.ir import dtypes as D
from modelc.ir.graph import Graph, GraphBuilder
from modelc.ir.opdef import get_op
from modelc.ir.types import TensorType
from modelc.passes.quant_gptq import gptq_rows, output_error
from modelc.passes.quant_layers import (
    collect_inputs,
    find_layers,
    from_rows,
    patches,
    weight_rows,
)
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline


def correlated(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """n samples of k features mixed so that neighbouring features correlate."""
    mix = np.eye(k) + 0.6 * rng.standard_normal((k, k)) / np.sqrt(k)
    mix += np.roll(np.eye(k), 1, axis=1) * 0.8
    return rng.standard_normal((n, k)) @ mix


def obq_reference(w: np.ndarray, h: np.ndarray, s: np.ndarray, bits: int) -> np.ndarray:
    """Columns in order, each quantized, its error spread with the inverse Hessian of the
    columns left, which then loses that column (OBQ, Frantar & Alistarh 2022, eq. 3-4)."""
    w = w.astype(np.float64).copy()
    h = h.copy()
    qmax = 2 ** (bits - 1) - 1
    h[np.diag_indices(len(h))] += 0.01 * np.mean(np.diag(h))
    hinv = np.linalg.inv(h)
    q = np.zeros(w.shape, np.int64)
    for i in range(w.shape[1]):
        q[:, i] = np.clip(np.rint(w[:, i] / s), -qmax, qmax)
        err = (w[:, i] - q[:, i] * s) / hinv[i, i]
        w -= np.outer(err, hinv[i, :])
        hinv -= np.outer(hinv[:, i], hinv[i, :]) / hinv[i, i]
    return q


@pytest.mark.parametrize("bits", [4, 8])
def test_gptq_matches_obq_and_beats_nearest(bits: int) -> None:
    rng = np.random.default_rng(0)
    x = correlated(rng, 600, 24)
    w = rng.standard_normal((10, 24))
    h = 2 * x.T @ x / len(x)
    qmax = 2 ** (bits - 1) - 1
    s = np.abs(w).max(axis=1) / qmax
    q = gptq_rows(w, h, s, bits)
    assert np.array_equal(q, obq_reference(w, h, s, bits))
    assert np.array_equal(q, gptq_rows(w, h, s, bits, block=5))  # lazy batches: same result
    assert q.min() >= -qmax and q.max() <= qmax
    nearest = np.clip(np.rint(w / s[:, None]), -qmax, qmax)
    err_n = np.sum((w @ x.T - (nearest * s[:, None]) @ x.T) ** 2)
    err_g = np.sum((w @ x.T - (q * s[:, None]) @ x.T) ** 2)
    assert err_g < 0.8 * err_n
    assert output_error(w, q * s[:, None], h) == pytest.approx(2 * err_g / len(x))


def test_gptq_dead_inputs_quantize_to_zero() -> None:
    rng = np.random.default_rng(1)
    x = correlated(rng, 200, 8)
    x[:, 3] = 0.0  # an input channel that never fires
    w = rng.standard_normal((4, 8))
    q = gptq_rows(w, 2 * x.T @ x, np.abs(w).max(axis=1) / 7, 4)
    assert np.all(q[:, 3] == 0)


# ---- the patch view -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs",
    [
        {"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1},
        {"strides": [2, 1], "pads": [0, 1, 2, 0], "dilations": [1, 2], "group": 2},
        {"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 4},
    ],
)
def test_patches_times_rows_is_the_conv(attrs: dict) -> None:
    rng = np.random.default_rng(2)
    g = attrs["group"]
    x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 4 // g, 3, 2)).astype(np.float32)
    b = GraphBuilder("c", fold=False)
    xi = b.add_input("x", TensorType(x.shape, D.f32))
    wc = b.add_constant(w, "w")
    b.set_outputs([b.add("conv", xi, wc, **attrs)])
    node = b.build().nodes[0]
    want = get_op("conv").evaluate([x, w], node.attrs, (node.output.type,))[0]
    ps, rows = patches(node, x, w.shape), weight_rows(node, w)
    got = np.concatenate([p @ r.T for p, r in zip(ps, rows)], axis=1)  # [N * O, M]
    n, m, oh, ow = want.shape
    got = got.reshape(n, oh, ow, m).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.array_equal(from_rows(node, w.shape, rows), w)


# ---- in the pass --------------------------------------------------------------------------------


def layer_net(conv: bool, group: int = 1) -> Graph:
    """One layer: a conv 6->8 (3x3, pad 1) or a matmul 24->8, with a bias."""
    rng = np.random.default_rng(3)
    b = GraphBuilder("one", fold=False)
    if conv:
        x = b.add_input("x", TensorType((1, 6, 6, 6), D.f32))
        w = b.add_constant(rng.standard_normal((8, 6 // group, 3, 3)).astype(np.float32), "w")
        bias = b.add_constant(rng.standard_normal(8).astype(np.float32) * 0.1, "b")
        attrs = {"pads": [1] * 4, "strides": [1, 1], "dilations": [1, 1], "group": group}
        y = b.add("conv", x, w, bias, loc="layer", **attrs)
    else:
        x = b.add_input("x", TensorType((4, 24), D.f32))
        w = b.add_constant(rng.standard_normal((24, 8)).astype(np.float32), "w")
        y = b.add("matmul", x, w, loc="layer")
    b.set_outputs([y])
    return b.build()


def layer_calibration(graph: Graph, n: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    shape = graph.inputs[0].type.shape
    k = int(np.prod(shape))
    xs = correlated(rng, n, k).reshape(n, *shape) + 0.5
    return {"x": xs.astype(np.float32)}


def dequantized_weight(q: Graph) -> np.ndarray:
    (dq,) = [n for n in q.nodes if n.op == "dequantize" and n.inputs[0].startswith("w.int")]
    data = q.constant_map[dq.inputs[0]].data.astype(np.float64)
    s = np.asarray(dq.attrs["scale"], np.float64)
    shape = [1] * data.ndim
    if dq.attrs["axis"] is not None:
        shape[dq.attrs["axis"]] = -1
    return data, data * s.reshape(shape)


@pytest.mark.parametrize(("conv", "group"), [(True, 1), (True, 2), (False, 1)])
@pytest.mark.parametrize("bits", [4, 8])
def test_pass_gptq_lowers_layer_output_error(conv: bool, group: int, bits: int) -> None:
    g = layer_net(conv, group)
    data = layer_calibration(g)
    (lay,) = find_layers(g)
    w = g.constant_map["w"].data
    stats = collect_inputs(lay.node, w.shape, list(data["x"]), second_moment=True)
    errors = {}
    for rounding in ("nearest", "gptq"):
        spec = f"quantize{{weight_bits={bits},rounding={rounding}}}"
        ctx = PassContext(verify=True, calibration=data)
        q = run_pipeline(g, parse_pipeline(spec), ctx)
        ints, wq = dequantized_weight(q)
        qmax = 2 ** (bits - 1) - 1
        assert ints.min() >= -qmax and ints.max() <= qmax
        rows_w, rows_q = weight_rows(lay.node, w), weight_rows(lay.node, wq)
        errors[rounding] = sum(
            output_error(a, b, stats.hessian(i)) for i, (a, b) in enumerate(zip(rows_w, rows_q))
        )
        assert ctx.reports["quantize"]["config"]["rounding"] == rounding
    assert errors["gptq"] < 0.9 * errors["nearest"]
