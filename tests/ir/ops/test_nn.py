"""NN ops (conv, batch_norm, lrn, max_pool, avg_pool): compiled lowering vs numpy reference,
reference vs onnxruntime, shape errors, and the shape of the generated loops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from ort_oracle import run_node

from modelc.errors import ShapeError
from modelc.ir import get_op
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import f32
from modelc.ir.loop import Schedule
from modelc.ir.types import TensorType
from modelc.testing import check_lowering, lower_op

RNG = np.random.default_rng(0)
TOL = {"atol": 1e-4, "rtol": 1e-4}


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def reference(op: str, inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    opdef = get_op(op)
    return opdef.evaluate(list(inputs), opdef.check_attrs(Attrs(attrs)))[0]


def conv_attrs(s: Sequence[int], p: Sequence[int], d: Sequence[int], g: int = 1) -> dict:
    return {"strides": list(s), "pads": list(p), "dilations": list(d), "group": g}


# (x shape, w shape, attrs): 1-D, 2-D and 3-D, every attribute off its default somewhere
CONV_CASES = {
    "3x3_pad1_bias": ((1, 3, 9, 9), (4, 3, 3, 3), conv_attrs([1, 1], [1, 1, 1, 1], [1, 1])),
    "stride2_asym_pads": ((1, 3, 10, 7), (5, 3, 3, 2), conv_attrs([2, 2], [1, 0, 2, 1], [1, 1])),
    "dilation2": ((1, 2, 11, 12), (3, 2, 3, 3), conv_attrs([1, 1], [2, 2, 2, 2], [2, 2])),
    "group2_batch2": ((2, 4, 10, 7), (6, 2, 3, 2), conv_attrs([2, 1], [1, 0, 2, 1], [1, 2], 2)),
    "depthwise": ((1, 4, 8, 8), (4, 1, 3, 3), conv_attrs([1, 1], [1, 1, 1, 1], [1, 1], 4)),
    "depthwise_x2_s2": ((1, 4, 9, 9), (8, 1, 3, 3), conv_attrs([2, 2], [1, 1, 1, 1], [1, 1], 4)),
    "1x1": ((2, 5, 6, 7), (3, 5, 1, 1), conv_attrs([1, 1], [0, 0, 0, 0], [1, 1])),
    "1x1_stride2": ((1, 5, 7, 7), (3, 5, 1, 1), conv_attrs([2, 2], [0, 0, 0, 0], [1, 1])),
    "taps_in_padding_only": ((1, 1, 3, 3), (2, 1, 5, 5), conv_attrs([1, 1], [4, 4, 4, 4], [2, 2])),
    "1d": ((1, 3, 11), (5, 3, 4), conv_attrs([3], [2, 1], [2])),
    "1d_no_pad": ((2, 2, 16), (4, 2, 3), conv_attrs([1], [0, 0], [1])),
    "3d": ((1, 2, 5, 6, 4), (3, 2, 2, 3, 2), conv_attrs([1, 2, 1], [0, 1, 1, 1, 0, 0], [1, 1, 2])),
    # big enough for the parallel pragma (OpenMP) to be emitted
    "parallel": ((1, 16, 20, 20), (24, 16, 3, 3), conv_attrs([1, 1], [1, 1, 1, 1], [1, 1])),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_lowering(case: str) -> None:
    xs, ws, attrs = CONV_CASES[case]
    bias = rand(ws[0]) if case != "1x1" else None
    check_lowering("conv", [rand(*xs), rand(*ws), bias], attrs, **TOL)


@pytest.mark.parametrize("case", ["group2_batch2", "depthwise_x2_s2", "1d", "3d", "dilation2"])
def test_conv_reference_matches_onnxruntime(case: str) -> None:
    xs, ws, attrs = CONV_CASES[case]
    x, w, b = rand(*xs), rand(*ws), rand(ws[0])
    theirs = run_node("Conv", [x, w, b], {**attrs, "kernel_shape": list(ws[2:])})[0]
    np.testing.assert_allclose(reference("conv", [x, w, b], attrs), theirs, **TOL)


def _walk(s: L.Stmt) -> list[L.Stmt]:
    out = [s]
    for child in ("body", "then", "else_"):
        c = getattr(s, child, None)
        if isinstance(c, L.Stmt):
            out += _walk(c)
    if isinstance(s, L.Seq):
        for c in s.stmts:
            out += _walk(c)
    return out


def test_conv_kernel_has_no_bounds_checks_and_a_parallel_annotated_loop() -> None:
    """Padding is handled by clipped loop bounds: no If or Select anywhere in the kernel."""
    xs, ws, attrs = CONV_CASES["stride2_asym_pads"]
    kernel, _ = lower_op("conv", [rand(*xs), rand(*ws)], attrs)
    stmts = _walk(kernel.body)
    assert not any(isinstance(s, L.If) for s in stmts)
    assert "Select" not in repr(kernel.body)
    outer = kernel.body
    assert isinstance(outer, L.For) and outer.kind == "parallel"
    assert dict(outer.annotations)["work"] == dict(kernel.info)["macs"] == 5 * (6 * 4) * (3 * 3 * 2)


@pytest.mark.parametrize(
    ("xs", "ws", "bs", "attrs", "match"),
    [
        ((1, 3, 8, 8), (4, 2, 3, 3), None, conv_attrs([1, 1], [0] * 4, [1, 1]), "channels"),
        ((1, 4, 8, 8), (4, 4, 3, 3), None, conv_attrs([1, 1], [0] * 4, [1, 1], 2), "channels"),
        ((1, 4, 8, 8), (6, 1, 3, 3), None, conv_attrs([1, 1], [0] * 4, [1, 1], 4), "group"),
        ((1, 3, 8, 8), (4, 3, 3, 3), (3,), conv_attrs([1, 1], [0] * 4, [1, 1]), "bias"),
        ((1, 3, 2, 8), (4, 3, 3, 3), None, conv_attrs([1, 1], [0] * 4, [1, 1]), "smaller"),
        ((1, 3, 8, 8), (4, 3, 3, 3), None, conv_attrs([1], [0] * 4, [1, 1]), "strides"),
        ((1, 3, 8, 8), (4, 3, 3, 3), None, conv_attrs([1, 1], [0] * 2, [1, 1]), "pads"),
        ((1, 3, 8, 8), (4, 3, 3), None, conv_attrs([1, 1], [0] * 4, [1, 1]), "rank"),
    ],
)
def test_conv_shape_errors(xs: tuple, ws: tuple, bs: tuple | None, attrs: dict, match: str):
    types = [TensorType(xs, f32), TensorType(ws, f32), None if bs is None else TensorType(bs, f32)]
    opdef = get_op("conv")
    with pytest.raises(ShapeError, match=match):
        opdef.infer_types(types, opdef.check_attrs(Attrs(attrs)))


# ---- batch_norm ----------------------------------------------------------------------------------


def _bn_inputs(shape: tuple[int, ...]) -> list[np.ndarray]:
    c = shape[1]
    return [rand(*shape), rand(c), rand(c), rand(c), np.abs(rand(c)) + 0.1]


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (3, 5), (1, 4, 7), (1, 3, 2, 3, 4)])
def test_batch_norm(shape: tuple[int, ...]) -> None:
    inputs = _bn_inputs(shape)
    check_lowering("batch_norm", inputs, {"epsilon": 1e-3}, **TOL)
    theirs = run_node("BatchNormalization", inputs, {"epsilon": 1e-3}, opset=15)[0]
    np.testing.assert_allclose(reference("batch_norm", inputs, {"epsilon": 1e-3}), theirs, **TOL)


def test_batch_norm_param_shape_error() -> None:
    types = [TensorType((1, 4, 2, 2), f32)] + [TensorType((3,), f32)] * 4
    with pytest.raises(ShapeError, match="scale"):
        get_op("batch_norm").infer_types(types, Attrs(epsilon=1e-5))


# ---- lrn ---------------------------------------------------------------------------------------


def _lrn_naive(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """The ONNX formula, written out channel by channel."""
    c = x.shape[1]
    out = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c - 1, ch + int(np.ceil((size - 1) / 2)))
        sq = np.sum(x[:, lo : hi + 1].astype(np.float64) ** 2, axis=1)
        out[:, ch] = x[:, ch] / (bias + alpha / size * sq) ** beta
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 9])
def test_lrn(size: int) -> None:
    x = rand(2, 6, 3, 4)
    attrs = {"size": size, "alpha": 1e-2, "beta": 0.75, "bias": 2.0}
    (got,) = check_lowering("lrn", [x], attrs, **TOL)
    np.testing.assert_allclose(got, _lrn_naive(x, size, 1e-2, 0.75, 2.0), **TOL)
    if size % 2:  # onnxruntime only takes odd sizes
        theirs = run_node("LRN", [x], attrs)[0]
        np.testing.assert_allclose(reference("lrn", [x], attrs), theirs, **TOL)


# ---- pooling -----------------------------------------------------------------------------------

# (x shape, kernel, strides, pads, dilations, ceil_mode)
POOL_CASES = {
    "3x3_s2_pad1": ((1, 2, 9, 9), [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], False),
    "3x3_s2_pad1_ceil": ((1, 2, 8, 8), [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], True),
    "asym_dilated_ceil": ((2, 3, 10, 7), [2, 3], [2, 2], [0, 1, 1, 0], [2, 1], True),
    "ceil_overhang": ((1, 2, 5, 5), [2, 2], [2, 2], [0, 0, 0, 0], [1, 1], True),
    "ceil_end_pads": ((1, 2, 6, 6), [3, 3], [2, 2], [0, 0, 2, 2], [1, 1], True),
    "ceil_last_window_dropped": ((1, 1, 4, 4), [2, 2], [2, 2], [0, 0, 1, 1], [1, 1], True),
    "overlap_s1": ((1, 2, 6, 7), [3, 2], [1, 1], [1, 0, 1, 1], [1, 1], False),
    "1d": ((1, 2, 11), [3], [2], [1, 1], [3], True),
    "3d": ((1, 2, 5, 6, 7), [2, 2, 3], [2, 1, 2], [1, 0, 0, 0, 1, 1], [1, 1, 1], True),
    "global": ((1, 3, 7, 7), [7, 7], [1, 1], [0, 0, 0, 0], [1, 1], False),
}


def _pool_attrs(case: str, op: str, count_include_pad: bool = False) -> dict[str, Any]:
    _, k, s, p, d, ceil = POOL_CASES[case]
    attrs: dict[str, Any] = {"kernel": k, "strides": s, "pads": p, "ceil_mode": ceil}
    if op == "max_pool":
        attrs["dilations"] = d
    else:
        attrs["count_include_pad"] = count_include_pad
    return attrs


def _onnx_pool_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in attrs.items() if k != "kernel"}
    out["kernel_shape"] = attrs["kernel"]
    return {k: int(v) if isinstance(v, bool) else v for k, v in out.items()}


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_max_pool(case: str) -> None:
    x = rand(*POOL_CASES[case][0])
    attrs = _pool_attrs(case, "max_pool")
    check_lowering("max_pool", [x], attrs)
    theirs = run_node("MaxPool", [x], _onnx_pool_attrs(attrs))[0]
    np.testing.assert_array_equal(reference("max_pool", [x], attrs), theirs)


@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("case", sorted(set(POOL_CASES) - {"1d", "asym_dilated_ceil"}))
def test_avg_pool(case: str, count_include_pad: bool) -> None:
    x = rand(*POOL_CASES[case][0])
    attrs = _pool_attrs(case, "avg_pool", count_include_pad)
    check_lowering("avg_pool", [x], attrs, **TOL)
    theirs = run_node("AveragePool", [x], _onnx_pool_attrs(attrs))[0]
    np.testing.assert_allclose(reference("avg_pool", [x], attrs), theirs, **TOL)


@pytest.mark.parametrize("length", [5, 6, 7])
def test_avg_pool_1d_ceil_mode_divisors_match_onnxruntime(length: int) -> None:
    """Every begin/end padding against a ceil_mode overhang, both divisor rules, on ones (so
    the output *is* the divisor ratio)."""
    x = np.ones((1, 1, length), np.float32) + rand(1, 1, length) * 0.1
    for k in (2, 3):
        for pads in ([0, 0], [1, 0], [0, 1], [1, 1], [0, 2]):
            if max(pads) >= k:
                continue
            for cip in (False, True):
                attrs = {"kernel": [k], "strides": [2], "pads": pads, "ceil_mode": True}
                attrs["count_include_pad"] = cip
                theirs = run_node("AveragePool", [x], _onnx_pool_attrs(attrs))[0]
                ours = reference("avg_pool", [x], attrs)
                np.testing.assert_allclose(ours, theirs, **TOL, err_msg=str(attrs))
    check_lowering("avg_pool", [x], attrs, **TOL)


def test_max_pool_int8_and_padding_never_selected() -> None:
    x = RNG.integers(-128, 0, (1, 2, 5, 5)).astype(np.int8)  # all negative: pads (0) would win
    attrs = {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 1]}
    (got,) = check_lowering("max_pool", [x], {**attrs, "ceil_mode": False})
    assert (got < 0).all()


def test_pool_shape_errors() -> None:
    opdef = get_op("avg_pool")
    attrs = opdef.check_attrs(Attrs(kernel=[5, 5], strides=[1, 1], pads=[0, 0, 0, 0]))
    with pytest.raises(ShapeError, match="smaller"):
        opdef.infer_types([TensorType((1, 1, 4, 4), f32)], attrs)
    attrs = opdef.check_attrs(Attrs(kernel=[2], strides=[1, 1], pads=[0, 0, 0, 0]))
    with pytest.raises(ShapeError, match="kernel"):
        opdef.infer_types([TensorType((1, 1, 4, 4), f32)], attrs)


@pytest.mark.parametrize("op", ["conv", "max_pool", "avg_pool", "batch_norm", "lrn"])
def test_serial_scalar_schedule(op: str) -> None:
    """Schedules only annotate loops: with parallel and vectorize off the kernels still match."""
    serial = Schedule(parallel=False, vectorize=False)
    if op == "conv":
        xs, ws, attrs = CONV_CASES["group2_batch2"]
        inputs = [rand(*xs), rand(*ws), rand(ws[0])]
    elif op == "batch_norm":
        inputs, attrs = _bn_inputs((2, 3, 4, 5)), {"epsilon": 1e-5}
    elif op == "lrn":
        inputs, attrs = [rand(2, 5, 3, 3)], {"size": 3}
    else:
        inputs, attrs = [rand(2, 3, 8, 7)], _pool_attrs("3x3_s2_pad1_ceil", op, True)
    kernel, _ = lower_op(op, inputs, attrs, serial)
    assert all(getattr(s, "kind", "serial") == "serial" for s in _walk(kernel.body)), (
        "a serial schedule must not produce parallel or vectorized loops"
    )
    check_lowering(op, inputs, attrs, schedule=serial, **TOL)
