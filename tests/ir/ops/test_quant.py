"""Quantization ops: quantize, dequantize, requantize, qconv, qmatmul.

- every lowering is bit-exact with its reference (check_lowering) on random integers that
  include the saturation edges;
- the requantize arithmetic matches a straightforward big-integer transcription of TFLite's
  formulas, and quantize_multiplier TFLite's QuantizeMultiplier;
- quantize / dequantize / the integer compute ops match onnxruntime bit for bit;
- quantization parameters travel in the types; shape and type errors say what is wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ort_oracle import run_node

from modelc.errors import ShapeError, UnsupportedTypeError
from modelc.ir import dtypes as D
from modelc.ir import get_op
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.loop import Schedule
from modelc.ir.opdef import LowerRequest
from modelc.ir.ops.quant_math import (
    INT32_MAX,
    INT32_MIN,
    NUMPY,
    quantize_multiplier,
    requantize_formula,
)
from modelc.ir.types import QuantParams, TensorType
from modelc.testing import check_lowering, lower_op

RNG = np.random.default_rng(1)


def ints(dtype: Any, shape: tuple[int, ...], lo: int | None = None, hi: int | None = None):
    """Random integers of `dtype` with both ends of the range present (saturation edges)."""
    info = np.iinfo(dtype)
    lo = info.min if lo is None else lo
    hi = info.max if hi is None else hi
    x = RNG.integers(lo, hi + 1, shape).astype(dtype)
    flat = x.reshape(-1)
    flat[: min(2, flat.size)] = [lo, hi][: min(2, flat.size)]
    return x


def ref(op: str, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    opdef = get_op(op)
    return opdef.evaluate(inputs, opdef.check_attrs(Attrs(attrs)))[0]


def infer(op: str, types: list[TensorType | None], attrs: dict[str, Any]) -> TensorType:
    opdef = get_op(op)
    return opdef.infer_types(types, opdef.check_attrs(Attrs(attrs)))[0]


# ---- quantize / dequantize -----------------------------------------------------------------------


def float_input(shape: tuple[int, ...], scale: float = 0.1, big: float = 1e30) -> np.ndarray:
    """Values over the whole range and far beyond (saturation), halves of the scale (ties),
    NaN and infinities."""
    x = (RNG.standard_normal(shape) * 100 * scale).astype(np.float32)
    flat = x.reshape(-1)
    specials = [np.nan, np.inf, -np.inf, big, -big] + [(k + 0.5) * scale for k in range(-3, 3)]
    flat[: len(specials)] = specials
    return x


def test_quantize_rounds_half_to_even() -> None:
    x = np.array([0.125, 0.375, 0.625, -0.125, -0.375, 0.1249], np.float32)  # scale 0.25: exact
    (q,) = check_lowering("quantize", [x], {"scale": [0.25], "zero_point": [0], "to": D.i8})
    np.testing.assert_array_equal(q, [0, 2, 2, 0, -2, 0])


@pytest.mark.parametrize(
    "to, zp", [(D.i8, -3), (D.u8, 128), (D.i16, 100), (D.u16, 30000), (D.i4, 1), (D.u4, 8)]
)
def test_quantize_per_tensor(to: D.DType, zp: int) -> None:
    x = float_input((3, 5, 7), 0.1 if to.bits > 8 else 0.5)
    (q,) = check_lowering("quantize", [x], {"scale": [0.1], "zero_point": [zp], "to": to})
    assert q.min() == to.min and q.max() == to.max  # both ends saturate
    assert q.reshape(-1)[0] == to.min  # NaN goes to the low end


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_quantize_per_axis(axis: int) -> None:
    x = float_input((3, 4, 5))
    n = x.shape[axis]
    attrs = {"scale": list(RNG.uniform(0.01, 0.2, n)), "zero_point": list(range(-n, n, 2))}
    check_lowering("quantize", [x], {**attrs, "axis": axis, "to": D.i8})


def test_quantize_f16_input() -> None:
    x = float_input((4, 9), big=6e4).astype(np.float16)
    check_lowering("quantize", [x], {"scale": [0.05], "zero_point": [2], "to": D.u8})


@pytest.mark.parametrize(
    "dtype, zp", [(np.int8, -5), (np.uint8, 131), (np.int16, -700), (np.uint16, 9), (np.int32, 0)]
)
def test_dequantize_per_tensor(dtype: Any, zp: int) -> None:
    check_lowering("dequantize", [ints(dtype, (4, 33))], {"scale": [0.037], "zero_point": [zp]})


def test_dequantize_per_axis_and_f16() -> None:
    q = ints(np.int8, (2, 6, 3))
    attrs = {"scale": list(RNG.uniform(0.01, 0.2, 6)), "zero_point": [0, 1, -1, 5, 7, -128]}
    check_lowering("dequantize", [q], {**attrs, "axis": 1})
    check_lowering("dequantize", [q], {**attrs, "axis": 1, "to": D.f16}, atol=0, rtol=0)


@pytest.mark.parametrize("opset", [13, 19, 21])
def test_quantize_and_dequantize_match_onnxruntime(opset: int) -> None:
    x = float_input((2, 3, 8), 0.05)
    x = np.where(np.isnan(x), 0, x).astype(np.float32)  # NaN has no defined result in ONNX
    scale = np.array([0.05, 0.02, 0.11], np.float32)
    zp = np.array([3, -9, 0], np.int8)
    theirs = run_node("QuantizeLinear", [x], {"axis": 1}, opset=opset, constants={1: scale, 2: zp})
    attrs = {"scale": list(scale), "zero_point": list(zp), "axis": 1}
    ours = ref("quantize", [x], {**attrs, "to": D.i8})
    np.testing.assert_array_equal(ours, theirs[0])
    theirs = run_node(
        "DequantizeLinear", [ours], {"axis": 1}, opset=opset, constants={1: scale, 2: zp}
    )
    np.testing.assert_array_equal(ref("dequantize", [ours], attrs), theirs[0])


def test_quantize_type_carries_quant_params() -> None:
    t = infer(
        "quantize",
        [TensorType((2, 3), D.f32)],
        {"scale": [0.1, 0.2, 0.3], "zero_point": [0, 0, 0], "axis": 1, "to": D.i4},
    )
    assert t == TensorType((2, 3), D.i4, QuantParams((0.1, 0.2, 0.3), (0, 0, 0), 1, 4, True))


@pytest.mark.parametrize(
    "attrs, match",
    [
        ({"scale": [0.1, 0.2], "zero_point": [0, 0]}, "need an axis"),
        ({"scale": [0.1, 0.2], "zero_point": [0, 0], "axis": 1}, "needs 3"),
        ({"scale": [0.1], "zero_point": [0, 1]}, "zero points"),
        ({"scale": [0.0], "zero_point": [0]}, "positive"),
        ({"scale": [0.1], "zero_point": [300]}, "do not fit"),
        ({"scale": [0.1], "zero_point": [0], "axis": 5}, "out of range"),
    ],
)
def test_quantize_param_errors(attrs: dict, match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        infer("quantize", [TensorType((2, 3), D.f32)], {**attrs, "to": D.u8})


def test_quantize_type_errors() -> None:
    with pytest.raises(UnsupportedTypeError, match="float"):
        infer("quantize", [TensorType((2,), D.i8)], {"scale": [1.0], "zero_point": [0], "to": D.u8})
    with pytest.raises(UnsupportedTypeError, match="cannot quantize to i32"):
        infer(
            "quantize", [TensorType((2,), D.f32)], {"scale": [1.0], "zero_point": [0], "to": D.i32}
        )


# ---- requantize: the arithmetic ------------------------------------------------------------------


def _srdhm(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul, transcribed with Python's big ints (the
    C original divides the nudged int64 product by 2^31, truncating toward zero)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    q = abs(v) >> 31
    return q if v >= 0 else -q


def _rdbpot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def _requantize_bigint(
    acc: int, mult: int, shift: int, zp: int, lo: int, hi: int, rounding: str
) -> int:
    """TFLite's MultiplyByQuantizedMultiplier (both roundings) in plain integer Python."""
    shift = max(-31, min(31, shift))
    if rounding == "single":
        total = 31 - min(shift, 30)
        y = (acc * mult + (1 << (total - 1))) >> total
        y = max(INT32_MIN, min(INT32_MAX, y))
    else:
        left, right = max(shift, 0), max(-shift, 0)
        x = max(INT32_MIN, min(INT32_MAX, acc * (1 << left)))
        y = _rdbpot(_srdhm(x, mult), right)
    return max(lo, min(hi, y + zp))


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_requantize_matches_big_int_tflite(rounding: str) -> None:
    n = 20000
    acc = RNG.integers(INT32_MIN, INT32_MAX + 1, n, dtype=np.int64)
    acc[: n // 2] //= 1 << int(RNG.integers(0, 24))  # small accumulators too
    edges = [INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX]
    acc[: len(edges)] = edges
    mult = RNG.integers(1 << 30, 1 << 31, n, dtype=np.int64)
    mult[-6:] = [0, 1 << 30, INT32_MAX, INT32_MIN, INT32_MAX, 1 << 30]
    shift = RNG.integers(-34, 34, n, dtype=np.int64)
    shift[: len(edges)] = [-31, 31, 0, 30, -32, 1]
    zp, lo, hi = 3, -128, 127
    got = requantize_formula(NUMPY, acc, mult, shift, zp, lo, hi, rounding)
    for i in range(n):
        want = _requantize_bigint(int(acc[i]), int(mult[i]), int(shift[i]), zp, lo, hi, rounding)
        assert got[i] == want, (i, acc[i], mult[i], shift[i], rounding)


def test_requantize_unclamped_values_match_big_int() -> None:
    """Without the output clamp every bit of the int32 result is compared."""
    n = 5000
    acc = RNG.integers(INT32_MIN, INT32_MAX + 1, n, dtype=np.int64)
    mult = RNG.integers(1 << 30, 1 << 31, n, dtype=np.int64)
    shift = RNG.integers(-31, 8, n, dtype=np.int64)
    for rounding in ("double", "single"):
        got = requantize_formula(NUMPY, acc, mult, shift, 0, INT32_MIN, INT32_MAX, rounding)
        want = [
            _requantize_bigint(int(a), int(m), int(s), 0, INT32_MIN, INT32_MAX, rounding)
            for a, m, s in zip(acc, mult, shift)
        ]
        np.testing.assert_array_equal(got, want)


def test_double_rounding_is_tflites() -> None:
    """acc * M = 0.25 with M = 2^-2: SRDHM rounds 0.5 up to 1, then 1 / 2 rounds up again."""
    m, s = quantize_multiplier(0.25)
    assert (m, s) == (1 << 30, -1)
    assert requantize_formula(NUMPY, np.int64(1), m, s, 0, -128, 127, "double") == 1
    assert requantize_formula(NUMPY, np.int64(1), m, s, 0, -128, 127, "single") == 0


@pytest.mark.parametrize(
    "real", [1.0, 0.5, 0.75, 2.0**-31, 2.0**-33, 1 - 2.0**-40, 0.0023, 123.456, 0.0]
)
def test_quantize_multiplier(real: float) -> None:
    m, s = quantize_multiplier(real)
    if real < 2.0**-32:
        assert (m, s) == (0, 0)
        return
    assert (1 << 30) <= m < (1 << 31)
    assert abs(m * 2.0 ** (s - 31) - real) <= 2.0 ** (s - 32)  # rounded to 31 bits


def test_quantize_multiplier_rounds_up_into_the_shift() -> None:
    assert quantize_multiplier(1 - 2.0**-40) == (1 << 30, 1)
    with pytest.raises(ValueError):
        quantize_multiplier(-1.0)


# ---- requantize: the op --------------------------------------------------------------------------


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_requantize_per_channel_lowering(rounding: str) -> None:
    acc = ints(np.int32, (2, 5, 3, 4))
    acc[0, :, 0, :2] = RNG.integers(-300, 300, (5, 2))  # a few small ones, where rounding shows
    mult = RNG.integers(1 << 30, 1 << 31, (1, 5, 1, 1)).astype(np.int32)
    shift = np.array([-31, -20, -9, 0, 3], np.int32).reshape(1, 5, 1, 1)
    attrs = {"zero_point": -4, "to": D.i8, "rounding": rounding}
    check_lowering("requantize", [acc, mult, shift], attrs)
    check_lowering("requantize", [acc, mult, shift], {**attrs, "min": -4, "max": 100})


def test_requantize_per_tensor_and_rescale_lowering() -> None:
    acc = ints(np.int32, (7, 9))
    m, s = (np.array(v, np.int32) for v in quantize_multiplier(0.0173))
    check_lowering("requantize", [acc, m, s], {"zero_point": 128, "to": D.u8})
    q = ints(np.uint8, (7, 9))  # rescaling a u8 tensor: input zero point, multiplier > 1
    m, s = (np.array(v, np.int32) for v in quantize_multiplier(1.7))
    attrs = {"zero_point": 5, "to": D.i16, "input_zero_point": 120, "rounding": "single"}
    check_lowering("requantize", [q, m, s], attrs)


def test_requantize_type_and_errors() -> None:
    acc, s = TensorType((1, 4, 2, 2), D.i32), TensorType((1, 4, 1, 1), D.i32)
    t = infer("requantize", [acc, s, s], {"zero_point": 5, "to": D.u8, "scale": 0.5})
    assert t.quant == QuantParams((0.5,), (5,), None, 8)
    with pytest.raises(ShapeError, match="broadcast"):
        infer("requantize", [acc, TensorType((3,), D.i32), s], {"to": D.u8})
    with pytest.raises(ShapeError, match="do not fit"):
        infer("requantize", [acc, s, s], {"to": D.u8, "zero_point": -1})
    with pytest.raises(ShapeError, match="rounding"):
        infer("requantize", [acc, s, s], {"to": D.u8, "rounding": "up"})
    with pytest.raises(UnsupportedTypeError, match="multiplier"):
        infer("requantize", [acc, TensorType((), D.i8), s], {"to": D.u8})


# ---- qconv ---------------------------------------------------------------------------------------


def conv_attrs(s: list[int], p: list[int], d: list[int], g: int = 1, **zp: Any) -> dict:
    return {"strides": s, "pads": p, "dilations": d, "group": g, **zp}


QCONV_CASES = {
    "3x3_pad_u8_i8_bias": (
        (1, 3, 9, 8),
        (4, 3, 3, 3),
        conv_attrs([1, 1], [1, 1, 1, 1], [1, 1], x_zero_point=128),
        np.uint8,
        np.int8,
        True,
    ),
    "stride2_asym_i8": (
        (2, 2, 10, 7),
        (5, 2, 3, 2),
        conv_attrs([2, 2], [1, 0, 2, 1], [1, 1], x_zero_point=-7),
        np.int8,
        np.int8,
        False,
    ),
    "dilation_group": (
        (1, 4, 11, 12),
        (6, 2, 3, 3),
        conv_attrs([1, 1], [2, 2, 2, 2], [2, 2], 2, x_zero_point=3),
        np.uint8,
        np.int8,
        True,
    ),
    "depthwise_per_channel_zp": (
        (1, 4, 8, 8),
        (4, 1, 3, 3),
        conv_attrs([1, 1], [1, 1, 1, 1], [1, 1], 4, x_zero_point=9, w_zero_point=[0, 3, -2, 127]),
        np.uint8,
        np.int8,
        True,
    ),
    "1x1_u8_u8": (
        (2, 5, 6, 7),
        (3, 5, 1, 1),
        conv_attrs([1, 1], [0, 0, 0, 0], [1, 1], x_zero_point=255, w_zero_point=[128]),
        np.uint8,
        np.uint8,
        False,
    ),
    "1d_i16": (
        (1, 3, 11),
        (5, 3, 4),
        conv_attrs([3], [2, 1], [2], x_zero_point=-1000, w_zero_point=[70]),
        np.int16,
        np.int16,
        True,
    ),
    "3d": (
        (1, 2, 5, 6, 4),
        (3, 2, 2, 3, 2),
        conv_attrs([1, 2, 1], [0, 1, 1, 1, 0, 0], [1, 1, 2]),
        np.int8,
        np.int8,
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(QCONV_CASES))
def test_qconv_lowering(case: str) -> None:
    xs, ws, attrs, xt, wt, bias = QCONV_CASES[case]
    b = ints(np.int32, (ws[0],), -50000, 50000) if bias else None
    check_lowering("qconv", [ints(xt, xs), ints(wt, ws), b], attrs)


@pytest.mark.parametrize("case", ["3x3_pad_u8_i8_bias", "dilation_group", "1x1_u8_u8"])
def test_qconv_reference_matches_onnxruntime_conv_integer(case: str) -> None:
    xs, ws, attrs, xt, wt, _ = QCONV_CASES[case]
    x, w = ints(xt, xs), ints(wt, ws).astype(np.uint8 if wt == np.uint8 else wt)
    if wt != np.uint8:  # onnxruntime's ConvInteger takes uint8 weights
        w = ints(np.uint8, ws)
    zp = attrs.get("w_zero_point", [0])
    onnx_attrs = {k: attrs[k] for k in ("strides", "pads", "dilations", "group")}
    theirs = run_node(
        "ConvInteger",
        [x, w],
        {**onnx_attrs, "kernel_shape": list(ws[2:])},
        opset=10,
        constants={
            2: np.array(attrs.get("x_zero_point", 0), np.uint8),
            3: np.array(zp[0], np.uint8),
        },
    )[0]
    ours = ref("qconv", [x, w], {**attrs, "w_zero_point": zp[:1]})
    np.testing.assert_array_equal(ours, theirs)


def test_qconv_types() -> None:
    x = TensorType((1, 2, 5, 5), D.u8, QuantParams((0.5,), (3,), None, 8))
    w = TensorType((4, 2, 3, 3), D.i8, QuantParams((0.25, 0.5, 1.0, 2.0), (0,) * 4, 0, 8, True))
    t = infer("qconv", [x, w], conv_attrs([1, 1], [0] * 4, [1, 1], x_zero_point=3))
    assert t.dtype == D.i32 and t.shape == (1, 4, 3, 3)
    assert t.quant == QuantParams((0.125, 0.25, 0.5, 1.0), (0,) * 4, 1, 32, True)
    with pytest.raises(ShapeError, match="zero points"):  # the attribute disagrees with the type
        infer("qconv", [x, w], conv_attrs([1, 1], [0] * 4, [1, 1], x_zero_point=4))
    with pytest.raises(ShapeError, match="bias"):
        infer(
            "qconv",
            [x, w, TensorType((3,), D.i32)],
            conv_attrs([1, 1], [0] * 4, [1, 1], x_zero_point=3),
        )
    with pytest.raises(UnsupportedTypeError, match="x must be"):
        infer("qconv", [TensorType((1, 2, 5, 5), D.f32), w], conv_attrs([1, 1], [0] * 4, [1, 1]))


# ---- qmatmul -------------------------------------------------------------------------------------

QMATMUL_CASES = [
    ((3, 7), (7, 4), [5], True),
    ((2, 3, 7), (7, 5), [-3, 0, 4, 9, 1], True),  # per-column zero points
    ((2, 1, 3, 7), (4, 7, 6), [0], False),  # both sides broadcast
    ((7,), (7, 1), [2], False),  # vector
    ((64, 96), (96, 80), [1], True),  # big enough for the parallel loop
]


@pytest.mark.parametrize("a_shape, b_shape, bzp, bias", QMATMUL_CASES)
def test_qmatmul_lowering(a_shape: tuple, b_shape: tuple, bzp: list[int], bias: bool) -> None:
    a, b = ints(np.uint8, a_shape), ints(np.int8, b_shape)
    c = ints(np.int32, (b_shape[-1],), -(10**6), 10**6) if bias else None
    check_lowering("qmatmul", [a, b, c], {"a_zero_point": 131, "b_zero_point": bzp})


def test_qmatmul_reference_matches_onnxruntime() -> None:
    a, b = ints(np.uint8, (2, 5, 9)), ints(np.int8, (9, 4))
    bzp = np.array([1, -2, 0, 7], np.int8)
    theirs = run_node(
        "MatMulInteger", [a, b], opset=10, constants={2: np.array(77, np.uint8), 3: bzp}
    )
    ours = ref("qmatmul", [a, b], {"a_zero_point": 77, "b_zero_point": list(bzp)})
    np.testing.assert_array_equal(ours, theirs[0])


def test_qmatmul_types() -> None:
    a = TensorType((3, 7), D.i8, QuantParams((0.5,), (0,), None, 8, True))
    b = TensorType((7, 2), D.i8, QuantParams((0.5, 0.25), (0, 0), 1, 8, True))
    t = infer("qmatmul", [a, b], {})
    assert t.quant == QuantParams((0.25, 0.125), (0, 0), 1, 32, True)
    with pytest.raises(ShapeError, match="zero points for b"):
        infer("qmatmul", [a, b], {"b_zero_point": [0, 0, 0]})


# ---- epilogue hook (fuse-epilogue) ---------------------------------------------------------------


@pytest.mark.parametrize("op", ["qconv", "qmatmul"])
def test_epilogue_is_applied_once_per_element(op: str) -> None:
    from modelc.runtime.kernel_runner import run_kernel

    if op == "qconv":
        inputs = [ints(np.uint8, (1, 2, 5, 5)), ints(np.int8, (3, 2, 3, 3))]
        attrs = conv_attrs([1, 1], [1, 1, 1, 1], [1, 1], x_zero_point=100)
    else:
        inputs, attrs = [ints(np.uint8, (4, 6)), ints(np.int8, (6, 3))], {"a_zero_point": 100}
    kernel, out_types = lower_op(op, inputs, attrs)
    req = LowerRequest(
        node=_node_of(op, inputs, attrs, out_types),
        in_types=tuple(TensorType(x.shape, D.from_numpy(x.dtype)) for x in inputs),
        out_types=out_types,
        schedule=Schedule(),
        kernel_name="k_epi",
        epilogue=lambda flat, dims, acc: L.Store("out0", flat, L.sub(L.mul(acc, 2), 1)),
    )
    got = run_kernel(get_op(op).lower(req), inputs)[0].reshape(out_types[0].shape)
    np.testing.assert_array_equal(got, ref(op, inputs, attrs) * 2 - 1)


def _node_of(op: str, inputs: list[np.ndarray], attrs: dict, out_types: tuple) -> Any:
    from modelc.ir.graph import Node, Value

    a = get_op(op).check_attrs(Attrs(attrs))
    names = tuple(f"x{i}" for i in range(len(inputs)))
    return Node(op, names, tuple(Value(f"y{i}", t) for i, t in enumerate(out_types)), a)
