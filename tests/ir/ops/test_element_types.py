"""Element types through lowering and the C renderer: bf16 (stored as 16 bits, computed in float,
stored round-to-nearest-even), f16 (_Float16), and casts into i4 / u4 (wrap into 4 bits). The C
kernels must match the numpy reference (ml_dtypes for bf16), bit-exact where no arithmetic
rounds."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from modelc.codegen.c import c_renderer
from modelc.ir import get_op
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import bf16, f16, f32, i4, i32, u4
from modelc.testing import check_lowering, lower_op

RNG = np.random.default_rng(0)
BF16 = ml_dtypes.bfloat16
X = RNG.standard_normal((3, 17)).astype(np.float32)
XB, YB = X.astype(BF16), RNG.standard_normal(17).astype(BF16)
# NaN, infinities, signed zero, a subnormal, the largest finite bf16, ties to even either way
SPECIAL = np.array(
    [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, 3.3895314e38, 1.00390625, 1.01171875, 65504.0],
    np.float32,
)
EXACT = {"atol": 0, "rtol": 0}


def test_bf16_casts_are_bit_exact() -> None:
    check_lowering("cast", [X], {"to": bf16}, **EXACT)
    check_lowering("cast", [SPECIAL], {"to": bf16}, **EXACT)
    check_lowering("cast", [XB], {"to": f32}, **EXACT)
    check_lowering("cast", [np.arange(-5, 300, 7, dtype=np.int32)], {"to": bf16}, **EXACT)
    check_lowering("cast", [XB * BF16(40)], {"to": i32})
    check_lowering("cast", [X.astype(np.float16)], {"to": bf16}, **EXACT)


@pytest.mark.parametrize("op", ["add", "mul", "sub", "div", "max", "less", "where"])
def test_bf16_binary(op: str) -> None:
    ins = [X > 0, XB, YB] if op == "where" else [XB, YB]
    check_lowering(op, ins, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("op", ["relu", "exp", "tanh", "sigmoid", "neg", "abs", "sqrt", "gelu"])
def test_bf16_unary(op: str) -> None:
    check_lowering(op, [np.abs(XB) if op == "sqrt" else XB], atol=1e-2, rtol=1e-2)


def test_bf16_kernels_with_loops() -> None:
    w = RNG.standard_normal((17, 5)).astype(BF16)
    check_lowering("matmul", [XB, w], atol=5e-2, rtol=5e-2)
    check_lowering("softmax", [XB], {"axis": 1}, atol=1e-2, rtol=1e-2)
    check_lowering("transpose", [XB], {"perm": [1, 0]}, **EXACT)


def test_bf16_renders_as_bits_computed_in_float() -> None:
    kernel, _ = lower_op("add", [XB, XB])
    text = c_renderer().kernel(kernel)
    assert "uint16_t* restrict out0" in text
    assert "modelc_f32_to_bf16(modelc_bf16_to_f32(in0[" in text


@pytest.mark.parametrize("op", ["relu", "exp", "sigmoid", "add"])
def test_f16(op: str) -> None:
    xh = X.astype(np.float16)
    check_lowering(op, [xh, xh] if op == "add" else [xh], atol=1e-3, rtol=1e-3)
    check_lowering("cast", [X], {"to": f16}, **EXACT)


# -9..16 and fractions: ONNX's test_cast_FLOAT_to_INT4 wants -9 -> 7 (wrap) and truncation
X4 = np.array([-9, -8.5, -2.7, -0.5, 0.5, 1.5, 2.7, 7.5, 8, 15, 16, 17, 100, -300], np.float32)


@pytest.mark.parametrize("to", [i4, u4])
@pytest.mark.parametrize(
    "x",
    [X4, X4.astype(np.float16), np.arange(-20, 20, dtype=np.int32), np.array([True, False])],
    ids=["f32", "f16", "i32", "bool"],
)
def test_cast_into_4_bits(to: object, x: np.ndarray) -> None:
    check_lowering("cast", [x], {"to": to})


def test_cast_into_4_bits_matches_ml_dtypes() -> None:
    """ml_dtypes (the ONNX reference's int4) truncates, then keeps the low 4 bits."""
    opdef = get_op("cast")
    for to, want in ((i4, ml_dtypes.int4), (u4, ml_dtypes.uint4)):
        got = opdef.evaluate([X4], opdef.check_attrs(Attrs(to=to)))[0]
        np.testing.assert_array_equal(got, X4.astype(want).astype(got.dtype))
    got = opdef.evaluate([X4], opdef.check_attrs(Attrs(to=i4)))[0]
    assert list(got[:2]) == [7, -8]
