"""layer_norm and attention: compiled lowering vs numpy reference, reference vs onnxruntime
(LayerNormalization-17, Attention-23), numerical stability, and shape errors."""

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
TOL = {"atol": 1e-5, "rtol": 1e-5}


def rand(*shape: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale + shift).astype(np.float32)


def reference(op: str, xs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    opdef = get_op(op)
    return opdef.evaluate(xs, opdef.check_attrs(Attrs(attrs)))[0]


def infer(op: str, shapes: list[tuple[int, ...] | None], attrs: dict[str, Any]) -> None:
    opdef = get_op(op)
    types = [None if s is None else TensorType(s, f32) for s in shapes]
    opdef.infer_types(types, opdef.check_attrs(Attrs(attrs)))


# ---- layer_norm ----------------------------------------------------------------------------------

LN_CASES = [
    ((2, 5, 8), (8,), (8,), 2),
    ((2, 5, 8), (5, 8), (5, 8), 1),  # two normalized axes, full affine shapes
    ((3, 4, 6), (4, 1), None, 1),  # gamma broadcast inside the normalized shape
    ((2, 3, 4), None, (4,), 2),  # beta without gamma
    ((7,), None, None, 0),
    ((4, 1), (1,), (1,), 1),  # one element per row: output is beta
]


@pytest.mark.parametrize("x, g, b, axis", LN_CASES, ids=str)
def test_layer_norm_lowering(x, g, b, axis) -> None:
    inputs = [rand(*x), None if g is None else rand(*g), None if b is None else rand(*b)]
    check_lowering("layer_norm", inputs, {"axis": axis, "epsilon": 1e-5}, **TOL)


def test_layer_norm_is_stable_for_large_offsets() -> None:
    """Rows with mean 1e4 and std 1e-1: E[x^2] - E[x]^2 would lose every digit in float32; the
    two-pass lowering keeps them (compared with the float64 reference)."""
    x = rand(4, 64, scale=0.1, shift=1e4)
    (got,) = check_lowering("layer_norm", [x, None, None], {"axis": 1}, atol=1e-4, rtol=1e-4)
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_norm_reference_matches_onnxruntime(axis: int) -> None:
    x = rand(2, 3, 4)
    g = rand(4) if axis == -1 else rand(3, 4)
    b = rand(4) if axis == -1 else rand(3, 4)
    (want,) = run_node("LayerNormalization", [x, g, b], {"axis": axis, "epsilon": 1e-3}, opset=17)
    got = reference("layer_norm", [x, g, b], {"axis": axis % 3, "epsilon": 1e-3})
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_layer_norm_shape_errors() -> None:
    with pytest.raises(ShapeError, match="does not broadcast"):
        infer("layer_norm", [(2, 3, 4), (3,)], {"axis": 2})
    with pytest.raises(ShapeError, match="more dims"):
        infer("layer_norm", [(2, 3, 4), (3, 4)], {"axis": 2})
    with pytest.raises(ShapeError, match="axis 3 out of range"):
        infer("layer_norm", [(2, 3, 4)], {"axis": 3})


# ---- attention ----------------------------------------------------------------------------------

ATT_CASES = [
    ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 7), None),
    ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 7), (5, 6)),
    ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 7), (2, 1, 1, 6)),  # padding mask per batch
    ((5, 4), (6, 4), (6, 7), (1, 6)),  # no batch dims
    ((1, 1, 1, 16), (1, 1, 33, 16), (1, 1, 33, 1), None),  # one query, Dv = 1
]


@pytest.mark.parametrize("q, k, v, mask", ATT_CASES, ids=str)
def test_attention_lowering(q, k, v, mask) -> None:
    inputs = [rand(*q), rand(*k), rand(*v)] + ([rand(*mask)] if mask else [])
    check_lowering("attention", inputs, {"scale": 0.35}, **TOL)


def test_attention_is_stable_for_large_scores() -> None:
    """Scores around 1e3: exp would overflow without subtracting the row max."""
    q, k, v = rand(1, 2, 3, 8, scale=30), rand(1, 2, 5, 8, scale=30), rand(1, 2, 5, 4)
    (got,) = check_lowering("attention", [q, k, v], {"scale": 1.0}, **TOL)
    assert np.all(np.isfinite(got))


def test_attention_reference_matches_onnxruntime() -> None:
    q, k, v, mask = rand(2, 3, 4, 8), rand(2, 3, 6, 8), rand(2, 3, 6, 5), rand(4, 6)
    (want,) = run_node("Attention", [q, k, v, mask], {"scale": 0.3}, opset=23)
    got = reference("attention", [q, k, v, mask], {"scale": 0.3})
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_attention_shape_errors() -> None:
    with pytest.raises(ShapeError, match="batch dims"):
        infer("attention", [(2, 3, 4, 8), (1, 3, 6, 8), (2, 3, 6, 5)], {"scale": 1.0})
    with pytest.raises(ShapeError, match="one Sk"):
        infer("attention", [(3, 4, 8), (3, 6, 8), (3, 5, 5)], {"scale": 1.0})
    with pytest.raises(ShapeError, match="mask"):
        infer("attention", [(4, 8), (6, 8), (6, 5), (4, 5)], {"scale": 1.0})
