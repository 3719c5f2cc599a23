"""Channels-last (layout="nhwc") conv, max_pool and avg_pool: every NCHW case of test_nn
again, transposed (and the conv weight packed [*K, C/g, M]), lowering vs reference; the
reference is the NCHW one on transposed operands, checked here against the NCHW op directly;
the inner loop runs over the contiguous channels; an NHWC conv takes epilogues."""

from __future__ import annotations

import numpy as np
import pytest
from test_nn import CONV_CASES, POOL_CASES, TOL, _pool_attrs, rand, reference

import modelc
from modelc.errors import ShapeError
from modelc.ir import get_op
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import f32
from modelc.ir.interpreter import run_graph
from modelc.ir.ops.nn import nhwc_weight_perm
from modelc.ir.ops.window import to_first, to_last
from modelc.ir.parser import parse_graph
from modelc.ir.types import TensorType
from modelc.testing import check_lowering, lower_op, random_inputs


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(to_last(x.ndim)))


def packed(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(nhwc_weight_perm(w.ndim)))


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_nhwc_lowering_and_reference(case: str) -> None:
    xs, ws, attrs = CONV_CASES[case]
    x, w = rand(*xs), rand(*ws)
    bias = rand(ws[0]) if case != "1x1" else None
    got = check_lowering("conv", [nhwc(x), packed(w), bias], {**attrs, "layout": "nhwc"}, **TOL)
    want = reference("conv", [x, w, bias], attrs)
    np.testing.assert_allclose(got[0].transpose(to_first(x.ndim)), want, **TOL)


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_max_pool_nhwc(case: str) -> None:
    x = rand(*POOL_CASES[case][0])
    attrs = _pool_attrs(case, "max_pool")
    (got,) = check_lowering("max_pool", [nhwc(x)], {**attrs, "layout": "nhwc"})
    np.testing.assert_array_equal(nhwc(reference("max_pool", [x], attrs)), got)


@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("case", sorted(set(POOL_CASES) - {"1d", "asym_dilated_ceil"}))
def test_avg_pool_nhwc(case: str, count_include_pad: bool) -> None:
    x = rand(*POOL_CASES[case][0])
    attrs = _pool_attrs(case, "avg_pool", count_include_pad)
    (got,) = check_lowering("avg_pool", [nhwc(x)], {**attrs, "layout": "nhwc"}, **TOL)
    np.testing.assert_allclose(nhwc(reference("avg_pool", [x], attrs)), got, **TOL)


def test_max_pool_nhwc_int8() -> None:
    x = np.random.default_rng(1).integers(-128, 127, (1, 5, 5, 3)).astype(np.int8)
    attrs = {"kernel": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 1]}
    check_lowering("max_pool", [x], {**attrs, "ceil_mode": True, "layout": "nhwc"})


def test_nhwc_shapes_and_errors() -> None:
    conv = get_op("conv")
    attrs = Attrs({"strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 2})
    x, w = TensorType((1, 9, 9, 4), f32), TensorType((3, 3, 2, 6), f32)
    (y,) = conv.infer_types([x, w], conv.check_attrs(Attrs({**attrs, "layout": "nhwc"})))
    assert y.shape == (1, 5, 5, 6)
    with pytest.raises(ShapeError, match="nhwc"):
        conv.infer_types(
            [x, TensorType((3, 3, 4, 6), f32)],
            conv.check_attrs(Attrs({**attrs, "layout": "nhwc"})),
        )
    with pytest.raises(ShapeError, match="layout must be"):
        conv.infer_types([x, w], conv.check_attrs(Attrs({**attrs, "layout": "nchwc"})))
    # the default is omitted, not filled in: NCHW graphs print as they always did
    assert "layout" not in conv.check_attrs(Attrs(attrs))
    pool = get_op("avg_pool")
    a = {"kernel": [3, 3], "strides": [2, 2], "pads": [0, 0, 0, 0], "layout": "nhwc"}
    (p,) = pool.infer_types([TensorType((2, 9, 9, 5), f32)], pool.check_attrs(Attrs(a)))
    assert p.shape == (2, 4, 4, 5)


def _innermost(s: L.Stmt) -> list[L.For]:
    """The loops with no loop inside them."""
    fors: list[L.For] = []

    def walk(t: L.Stmt | None) -> bool:
        if t is None:
            return False
        if isinstance(t, L.Seq):
            return any([walk(c) for c in t.stmts])
        if isinstance(t, L.For):
            if not walk(t.body):
                fors.append(t)
            return True
        if isinstance(t, L.If):
            return any([walk(t.then), walk(t.else_)])
        if isinstance(t, (L.Let, L.Allocate)):
            return walk(t.body)
        return False

    walk(s)
    return fors


@pytest.mark.parametrize("case", ["3x3_pad1_bias", "group2_batch2", "depthwise_x2_s2"])
def test_conv_nhwc_inner_loops_run_over_channels(case: str) -> None:
    """Whatever the geometry, every innermost loop walks output channels, vectorized."""
    xs, ws, attrs = CONV_CASES[case]
    kernel, _ = lower_op("conv", [nhwc(rand(*xs)), packed(rand(*ws))], {**attrs, "layout": "nhwc"})
    inner = _innermost(kernel.body)
    assert inner and all(f.var.name == "m" and f.kind == "vectorized" for f in inner)


NET = """
graph @g(%x: f32[1,6,6,4], %r: f32[1,6,6,8]) -> (%y) {
  const %w: f32[3,3,4,8] = dense<base64:"W64">
  const %b: f32[8] = dense<[0.5, -0.5, 0.25, 0.0, 1.0, -1.0, 0.125, 2.0]>
  %c: f32[1,6,6,8] = conv(%x, %w) {dilations=[1, 1], group=1, layout="nhwc", pads=[1, 1, 1, 1],
                                    strides=[1, 1]}
  %a: f32[1,6,6,8] = add(%c, %b)
  %s: f32[1,6,6,8] = add(%a, %r)
  %y: f32[1,6,6,8] = relu(%s)
  return %y
}
"""


def test_nhwc_conv_fuses_a_channels_last_epilogue() -> None:
    """Bias (broadcast over the last dim), residual and relu fuse into the NHWC conv: the
    epilogue gets the output's NHWC indices, so the bias is read at index m."""
    import base64

    w = np.random.default_rng(3).standard_normal((3, 3, 4, 8)).astype(np.float32)
    g = parse_graph(NET.replace("W64", base64.b64encode(w.tobytes()).decode()))
    lib = modelc.compile(g, target="cpu", verify=True)
    feeds = random_inputs(g, seed=4)
    np.testing.assert_allclose(lib.run(feeds)["y"], run_graph(g, feeds)["y"], **TOL)
    assert lib.manifest["launches"] == 1
