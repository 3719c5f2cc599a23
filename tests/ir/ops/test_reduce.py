"""Reductions, softmax / log_softmax and argmax / argmin: compiled lowering vs numpy reference,
reference vs onnxruntime, and shape errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ort_oracle import run_node

from modelc.errors import ShapeError
from modelc.ir import get_op
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import f32
from modelc.ir.types import TensorType
from modelc.testing import check_lowering

RNG = np.random.default_rng(0)
TOL = {"atol": 1e-4, "rtol": 1e-4}
SHAPE = (2, 3, 4, 5)
KINDS = ["sum", "mean", "max", "min", "prod"]
ONNX_ARG = {"argmax": "ArgMax", "argmin": "ArgMin"}
# all, leading, trailing (register accumulation), middle, split runs, global pool, everything
AXES = [(), (0,), (3,), (1,), (1, 3), (2, 3), (0, 2), (0, 1, 2, 3)]


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def reference(op: str, x: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    opdef = get_op(op)
    return opdef.evaluate([x], opdef.check_attrs(Attrs(attrs)))[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axes", AXES, ids=str)
def test_reduce(kind: str, axes: tuple[int, ...]) -> None:
    x = rand(*SHAPE)
    if kind == "prod":  # keep products of 120 factors in range
        x = (np.sign(x) * (0.8 + 0.4 * RNG.random(SHAPE))).astype(np.float32)
    for keepdims in (False, True):
        (got,) = check_lowering(f"reduce_{kind}", [x], {"axes": axes, "keepdims": keepdims}, **TOL)
        expected_shape = np.sum(x, axis=axes or None, keepdims=keepdims).shape
        assert got.shape == expected_shape


def test_reduce_int_and_size_one_dims() -> None:
    xi = RNG.integers(-9, 9, (3, 1, 4)).astype(np.int64)
    check_lowering("reduce_sum", [xi], {"axes": (0,), "keepdims": False})
    check_lowering("reduce_max", [xi], {"axes": (1, 2), "keepdims": True})
    check_lowering("reduce_mean", [xi], {"axes": (2,), "keepdims": False})  # C truncation
    check_lowering("reduce_mean", [rand(1, 1)], {"axes": (1,), "keepdims": False})


@pytest.mark.parametrize("kind", KINDS)
def test_reduce_reference_matches_onnxruntime(kind: str) -> None:
    x = rand(*SHAPE)
    for axes in [(1, 3), ()]:
        attrs = {"axes": axes, "keepdims": False}
        onnx_op = "Reduce" + kind.capitalize()
        constants = {1: np.array(axes, np.int64)} if axes else {}
        theirs = run_node(onnx_op, [x], {"keepdims": 0}, opset=18, constants=constants)[0]
        np.testing.assert_allclose(reference(f"reduce_{kind}", x, attrs), theirs, **TOL)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1, 3])
def test_softmax(op: str, axis: int) -> None:
    x = rand(*SHAPE) * 10  # large logits: the max subtraction matters
    x[0, 0, 0, 0] = 80.0  # exp would overflow without it
    check_lowering(op, [x], {"axis": axis}, **TOL)
    onnx_op = "Softmax" if op == "softmax" else "LogSoftmax"
    theirs = run_node(onnx_op, [x], {"axis": axis}, opset=13)[0]
    np.testing.assert_allclose(reference(op, x, {"axis": axis}), theirs, **TOL)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [0, 2, 3])
def test_arg(op: str, axis: int) -> None:
    x = RNG.integers(-2, 3, SHAPE).astype(np.float32)  # many ties
    for keepdims in (False, True):
        for last in (False, True):
            attrs = {"axis": axis, "keepdims": keepdims, "select_last_index": last}
            check_lowering(op, [x], attrs)
            theirs = run_node(ONNX_ARG[op], [x], _ints(attrs))[0]
            np.testing.assert_array_equal(reference(op, x, attrs), theirs)


def test_argmax_int_input() -> None:
    x = RNG.integers(-100, 100, (4, 6)).astype(np.int32)
    check_lowering("argmax", [x], {"axis": 1, "keepdims": False, "select_last_index": False})


def _ints(attrs: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in attrs.items()}


@pytest.mark.parametrize(
    ("op", "attrs", "match"),
    [
        ("reduce_sum", {"axes": (3, 1)}, "sorted"),
        ("reduce_sum", {"axes": (4,)}, "sorted"),
        ("softmax", {"axis": 4}, "out of range"),
        ("argmax", {"axis": 5}, "out of range"),
    ],
)
def test_shape_errors(op: str, attrs: dict[str, Any], match: str) -> None:
    opdef = get_op(op)
    with pytest.raises(ShapeError, match=match):
        opdef.infer_types([TensorType(SHAPE, f32)], opdef.check_attrs(Attrs(attrs)))
