"""mod, cumsum, gather_elements and scatter_nd: compiled lowering vs numpy reference, reference
vs onnxruntime, shape errors."""

from __future__ import annotations

import numpy as np
import pytest
from ort_oracle import run_node

from modelc.errors import ShapeError, UnsupportedOpError
from modelc.ir import get_op
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import f32, i64
from modelc.ir.types import TensorType
from modelc.testing import check_lowering

RNG = np.random.default_rng(0)


def reference(op: str, inputs: list[np.ndarray], attrs: dict) -> np.ndarray:
    opdef = get_op(op)
    return opdef.evaluate(inputs, opdef.check_attrs(Attrs(attrs)))[0]


# ---- mod -----------------------------------------------------------------------------------------

A_INT = np.array([[-7, -4, 0, 3, 9, 5]], np.int32)
B_INT = np.array([[3], [-3], [0]], np.int32)  # broadcast; includes a remainder by zero
A_F = RNG.uniform(-10, 10, (3, 5)).astype(np.float32)
B_F = np.where(RNG.uniform(size=5) < 0.5, -1, 1).astype(np.float32) * RNG.uniform(1, 4, 5).astype(
    np.float32
)


@pytest.mark.parametrize("fmod", [False, True])
def test_mod_lowering(fmod: bool) -> None:
    check_lowering("mod", [A_INT, B_INT], {"fmod": fmod})
    check_lowering("mod", [A_INT.astype(np.int64), B_INT.astype(np.int64)], {"fmod": fmod})
    check_lowering("mod", [A_INT.astype(np.uint8) % 9, np.uint8([[4], [0]])], {"fmod": fmod})
    check_lowering("mod", [A_F, B_F], {"fmod": fmod})


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_reference_matches_onnxruntime(fmod: int) -> None:
    b = np.array([[3], [-3]], np.int32)
    theirs = run_node("Mod", [A_INT, b], {"fmod": fmod})[0]
    np.testing.assert_array_equal(reference("mod", [A_INT, b], {"fmod": bool(fmod)}), theirs)
    if fmod:
        theirs = run_node("Mod", [A_F, B_F], {"fmod": 1})[0]
        np.testing.assert_allclose(reference("mod", [A_F, B_F], {"fmod": True}), theirs)


def test_mod_by_zero_is_zero_for_integers() -> None:
    out = check_lowering("mod", [np.int32([5, -5]), np.int32([0, 0])], {"fmod": False})[0]
    np.testing.assert_array_equal(out, [0, 0])


# ---- cumsum --------------------------------------------------------------------------------------

X3 = RNG.standard_normal((3, 4, 5)).astype(np.float32)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cumsum_lowering(axis: int) -> None:
    for exclusive in (False, True):
        for rev in (False, True):
            attrs = {"axis": axis, "exclusive": exclusive, "reverse": rev}
            check_lowering("cumsum", [X3], attrs, atol=1e-5, rtol=1e-5)
    check_lowering("cumsum", [np.arange(12, dtype=np.int32).reshape(3, 4)], {"axis": 1})


def test_cumsum_reference_matches_onnxruntime() -> None:
    for exclusive in (0, 1):
        for rev in (0, 1):
            attrs = {"exclusive": exclusive, "reverse": rev}
            theirs = run_node("CumSum", [X3], attrs, constants={1: np.int64(1)}, opset=14)[0]
            ours = reference("cumsum", [X3], {"axis": 1, **{k: bool(v) for k, v in attrs.items()}})
            np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)


# ---- gather_elements -----------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather_elements(axis: int) -> None:
    n = X3.shape[axis]
    idx = RNG.integers(-n, n, (2, 3, 4)).astype(np.int64)
    idx32 = idx.astype(np.int32)
    check_lowering("gather_elements", [X3, idx], {"axis": axis}, atol=0, rtol=0)
    check_lowering("gather_elements", [X3, idx32], {"axis": axis}, atol=0, rtol=0)
    theirs = run_node("GatherElements", [X3, idx], {"axis": axis}, opset=13)[0]
    np.testing.assert_array_equal(reference("gather_elements", [X3, idx], {"axis": axis}), theirs)


def test_gather_elements_errors() -> None:
    opdef = get_op("gather_elements")
    bad = [TensorType((3, 4), f32), TensorType((3, 5), i64)]
    with pytest.raises(ShapeError, match="no\\s+larger dims"):
        opdef.infer_types(bad, opdef.check_attrs(Attrs(axis=0)))
    with pytest.raises(ShapeError, match="out of range"):
        reference("gather_elements", [X3[0], np.int64([[7]])], {"axis": 0})


# ---- scatter_nd ----------------------------------------------------------------------------------

DATA = RNG.standard_normal((4, 3, 2)).astype(np.float32)
ROWS = np.array([[1], [-1], [0]], np.int64)  # distinct rows
UPD = RNG.standard_normal((3, 3, 2)).astype(np.float32)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd(reduction: str) -> None:
    attrs = {"reduction": reduction}
    check_lowering("scatter_nd", [DATA, ROWS, UPD], attrs, atol=1e-6, rtol=1e-6)
    rows2 = np.array([[[0, 1], [3, 2]], [[1, 1], [0, 1]]], np.int64)  # repeats (0, 1)
    upd2 = RNG.standard_normal((2, 2, 2)).astype(np.float32)
    if reduction != "none":  # duplicates only have one meaning when they combine
        check_lowering("scatter_nd", [DATA, rows2, upd2], attrs, atol=1e-6, rtol=1e-6)
        ours = reference("scatter_nd", [DATA, rows2, upd2], attrs)
        theirs = run_node("ScatterND", [DATA, rows2, upd2], attrs, opset=18)[0]
        np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=1e-6)
    theirs = run_node("ScatterND", [DATA, ROWS, UPD], attrs, opset=18)[0]
    np.testing.assert_allclose(reference("scatter_nd", [DATA, ROWS, UPD], attrs), theirs)


def test_scatter_nd_errors() -> None:
    opdef = get_op("scatter_nd")
    types = [TensorType((4, 3), f32), TensorType((2, 1), i64), TensorType((2, 4), f32)]
    with pytest.raises(ShapeError, match="updates must have shape"):
        opdef.infer_types(types, opdef.check_attrs(Attrs()))
    types[2] = TensorType((2, 3), f32)
    with pytest.raises(UnsupportedOpError, match="reduction"):
        opdef.infer_types(types, opdef.check_attrs(Attrs(reduction="avg")))
