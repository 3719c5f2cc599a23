"""Quantized ONNX ops: QuantizeLinear, DequantizeLinear, QLinearConv, QLinearMatMul,
MatMulInteger and ConvInteger.

Scales and zero points become attributes of the IR ops (they must be constants; every exporter
stores them as initializers), so the integer values carry their quantization in their types.
QLinear* ops become the integer compute op (`qconv` / `qmatmul`, int32 accumulators) followed
by `requantize`, whose fixed-point multipliers are computed here from the scales, TFLite-style
(docs/quantization_numerics.md).

A DequantizeLinear of a constant is *not* folded at import: the `fold-qdq` pass needs to see
`dequantize(int8 weight)` to turn DQ -> Conv -> Q into integer ops, and `fold-constants` folds
whatever it leaves behind.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelc.frontend.onnx_ops.common import axis as norm_axis
from modelc.frontend.onnx_ops.common import spatial_attrs
from modelc.frontend.onnx_ops.dtypes import to_dtype
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter
from modelc.ir import dtypes as D
from modelc.ir.dtypes import DType
from modelc.ir.ops.quant_math import NUMPY, compact, dequantize_formula, requantize_constants

FLOAT_ELEM = 1  # TensorProto.FLOAT


class Params:
    """Constant scales and zero points of one quantized operand."""

    def __init__(self, scales: list[float], zps: list[int], axis: int | None, dtype: DType):
        self.scales, self.zps, self.axis, self.dtype = scales, zps, axis, dtype

    def attrs(self) -> dict[str, object]:
        return {"scale": self.scales, "zero_point": self.zps, "axis": self.axis}


def _params(
    n: OnnxNode,
    scale_idx: int,
    zp_idx: int,
    what: str,
    *,
    channels: tuple[int, int] | None = None,
    default_dtype: DType = D.u8,
) -> Params:
    """Scale and zero point inputs as lists. One element is per tensor; a 1-D tensor is per
    channel along `channels = (axis, length)` when the op allows it."""
    scale = np.asarray(n.const(scale_idx, f"{what} scale")).astype(np.float64)
    dtype = n.dtype(zp_idx) if n.has_input(zp_idx) else default_dtype
    zp = np.zeros(scale.shape, np.int64)
    if n.has_input(zp_idx):
        zp = np.asarray(n.const(zp_idx, f"{what} zero point"), np.int64)
    if zp.size == 1 and scale.size > 1:
        zp = np.broadcast_to(zp.reshape(()), scale.shape)
    if scale.size == 1 and zp.size == 1:
        return Params([float(scale.reshape(-1)[0])], [int(zp.reshape(-1)[0])], None, dtype)
    if channels is None or scale.ndim != 1 or scale.shape != zp.shape:
        raise n.unsupported(
            f"{what} scale {list(scale.shape)} / zero point {list(zp.shape)}: only per-tensor "
            + ("or per-channel (1-D) " if channels else "")
            + "quantization is supported here"
        )
    axis, length = channels
    if scale.size != length:
        raise n.shape_error(f"{what} has {scale.size} scales for {length} channels")
    return Params([float(s) for s in scale], [int(z) for z in zp], axis, dtype)


def _int_dtype(n: OnnxNode, i: int, what: str) -> DType:
    dt = n.dtype(i)
    if not dt.is_int:
        raise n.unsupported(f"{what} must be an integer tensor, got {dt}")
    return dt


# ---- QuantizeLinear / DequantizeLinear -----------------------------------------------------------


def _axis_channels(n: OnnxNode, per_axis: bool) -> tuple[int, int] | None:
    if not per_axis:
        return None
    rank = n.rank(0)
    ax = n.attr("axis", 1)
    if not -rank <= ax < rank:
        return None  # fine for per-tensor parameters; _params rejects per-channel ones
    ax = norm_axis(n, ax, rank)
    return ax, n.shape(0)[ax]


def _reject_blocked(n: OnnxNode) -> None:
    if n.attr("block_size", 0):
        raise n.unsupported(
            "blocked quantization (block_size) of a run-time tensor is not supported; "
            "per-tensor and per-axis are (a blocked DequantizeLinear of a constant folds)"
        )


def _quantize(n: OnnxNode, per_axis: bool) -> list[str]:
    _reject_blocked(n)
    if n.attr("precision", 0) not in (0, FLOAT_ELEM):
        raise n.unsupported("only float32 precision of the division is supported")
    default = D.u8
    if n.has_attr("output_dtype") and n.attr("output_dtype"):
        default = to_dtype(n.attr("output_dtype"), f"{n.describe()}: output_dtype")
    p = _params(n, 1, 2, "y", channels=_axis_channels(n, per_axis), default_dtype=default)
    return [n.op("quantize", n.input(0), to=p.dtype, **p.attrs())]


@converter("QuantizeLinear", since=10)
def quantize_10(n: OnnxNode) -> list[str]:
    """Per tensor: saturate(round_half_even(x / y_scale) + y_zero_point)."""
    return _quantize(n, per_axis=False)


@converter("QuantizeLinear", since=13)
def quantize_13(n: OnnxNode) -> list[str]:
    """13 added per-axis quantization (`axis`, default 1); 19 `saturate` (float8 only), 21
    `block_size` / `output_dtype` and 4-bit types, 23 `precision`: one converter serves all."""
    return _quantize(n, per_axis=True)


def _blocked_dequantize(n: OnnxNode) -> list[str]:
    """Blocked DequantizeLinear of a constant (4-bit LLM weights): folded here with the same
    formula the IR op uses."""
    x = n.maybe_const(0)
    if x is None:
        _reject_blocked(n)
    assert x is not None
    block = int(n.attr("block_size"))
    ax = norm_axis(n, n.attr("axis", 1), x.ndim)
    scale = np.asarray(n.const(1, "x scale"), np.float32)
    zp = np.asarray(n.maybe_const(2) if n.has_input(2) else np.zeros(scale.shape), np.int64)
    if scale.ndim != x.ndim or zp.shape != scale.shape:
        raise n.shape_error(f"blocked scale {scale.shape} does not fit x {x.shape}")
    scale = np.repeat(scale, block, axis=ax).take(range(x.shape[ax]), axis=ax)
    zp = np.repeat(zp, block, axis=ax).take(range(x.shape[ax]), axis=ax)
    y = dequantize_formula(NUMPY, x.astype(np.int64), scale, zp)
    return [n.constant(np.asarray(y, np.float32).astype(_dq_out(n).numpy), _dq_out(n))]


def _dq_out(n: OnnxNode) -> DType:
    if n.attr("output_dtype", 0):
        return to_dtype(n.attr("output_dtype"), f"{n.describe()}: output_dtype")
    return n.dtype(1)  # the scale's type


def _dequantize(n: OnnxNode, per_axis: bool) -> list[str]:
    if n.attr("block_size", 0):
        return _blocked_dequantize(n)
    x = n.input(0)
    dt = _int_dtype(n, 0, "x")
    p = _params(n, 1, 2, "x", channels=_axis_channels(n, per_axis), default_dtype=dt)
    # Not folded even when x is constant: fold-qdq looks for dequantize(int weight).
    (y,) = n.b.add_node(
        "dequantize",
        [x],
        {"to": _dq_out(n), **p.attrs()},
        loc=n.loc,
        fold=False,
    )
    return [y]


@converter("DequantizeLinear", since=10)
def dequantize_10(n: OnnxNode) -> list[str]:
    """Per tensor: (x - x_zero_point) * x_scale."""
    return _dequantize(n, per_axis=False)


@converter("DequantizeLinear", since=13)
def dequantize_13(n: OnnxNode) -> list[str]:
    """13 added `axis`; 21 `block_size` (folded for constants); 23 `output_dtype`."""
    return _dequantize(n, per_axis=True)


# ---- integer compute -----------------------------------------------------------------------------


def _conv_attrs(n: OnnxNode, w_idx: int) -> dict[str, object]:
    x_shape, w_shape = n.shape(0), n.shape(w_idx)
    if len(x_shape) < 3 or len(w_shape) != len(x_shape):
        raise n.shape_error(f"X {x_shape} and W {w_shape} are not an N-d convolution's operands")
    kernel = list(w_shape[2:])
    given = n.ints_attr("kernel_shape")
    if given is not None and list(given) != kernel:
        raise n.shape_error(f"kernel_shape {given} disagrees with W's shape {w_shape}")
    strides, pads, dilations = spatial_attrs(n, x_shape[2:], kernel)
    return {"strides": strides, "pads": pads, "dilations": dilations, "group": n.attr("group", 1)}


def requantize(
    n: OnnxNode, acc: str, in_scale: float, w_scales: Sequence[float], y: Params, axis: int
) -> str:
    """`requantize` of an int32 accumulator with scale in_scale * w_scale[c] to y's scale:
    multipliers M[c] = in_scale * w_scale[c] / y_scale, per channel along `axis` of the
    accumulator when the weight scales differ."""
    reals = [in_scale * s / y.scales[0] for s in w_scales]
    mult, shift = requantize_constants(reals, n.b.types[acc].rank, axis)
    m_c = n.constant(mult, D.i32)
    s_c = n.constant(shift, D.i32)
    return n.op("requantize", acc, m_c, s_c, zero_point=y.zps[0], to=y.dtype, scale=y.scales[0])


def _require_per_tensor(n: OnnxNode, p: Params, what: str) -> None:
    if p.axis is not None:
        raise n.unsupported(f"{what} must be quantized per tensor")


@converter("QLinearConv", since=10)
def qlinear_conv(n: OnnxNode) -> list[str]:
    """qconv (int32 accumulator, bias added exactly) + requantize to y's scale."""
    attrs = _conv_attrs(n, 3)
    m = n.shape(3)[0]
    xp = _params(n, 1, 2, "x", default_dtype=_int_dtype(n, 0, "x"))
    wp = _params(n, 4, 5, "w", channels=(0, m), default_dtype=_int_dtype(n, 3, "w"))
    yp = _params(n, 6, 7, "y")
    _require_per_tensor(n, xp, "x")
    _require_per_tensor(n, yp, "y")
    acc = n.op(
        "qconv",
        n.input(0),
        n.input(3),
        *([n.input(8)] if n.has_input(8) else []),
        x_zero_point=xp.zps[0],
        w_zero_point=compact(wp.zps),
        **attrs,
    )
    return [requantize(n, acc, xp.scales[0], wp.scales, yp, axis=1)]


@converter("ConvInteger", since=10)
def conv_integer(n: OnnxNode) -> list[str]:
    """qconv: the int32 accumulator itself."""
    m = n.shape(1)[0]
    _int_dtype(n, 0, "x")
    _int_dtype(n, 1, "w")
    xzp = _zero_points(n, 2, "x", 1)
    wzp = _zero_points(n, 3, "w", m)
    return [
        n.op(
            "qconv",
            n.input(0),
            n.input(1),
            x_zero_point=xzp[0],
            w_zero_point=compact(wzp),
            **_conv_attrs(n, 1),
        )
    ]


def _zero_points(n: OnnxNode, i: int, what: str, channels: int) -> list[int]:
    """An optional zero-point input without a scale (ConvInteger, MatMulInteger): one value,
    or one per channel when `channels` > 1."""
    if not n.has_input(i):
        return [0]
    z = [int(v) for v in np.asarray(n.const(i, f"{what} zero point")).reshape(-1)]
    if len(z) != 1 and (len(z) != channels or channels == 1):
        what_ok = "per tensor" if channels == 1 else f"per tensor or one per channel ({channels})"
        raise n.unsupported(f"{what} zero point has {len(z)} values; it must be {what_ok}")
    return z


@converter("QLinearMatMul", since=10)
def qlinear_matmul(n: OnnxNode) -> list[str]:
    """qmatmul + requantize; b may be quantized per column. (QLinearMatMul-21 only widened the
    scale types.)"""
    cols = n.shape(3)[-1]
    ap = _params(n, 1, 2, "a", default_dtype=_int_dtype(n, 0, "a"))
    channels = (n.rank(3) - 1, cols) if n.rank(3) >= 2 else None
    bp = _params(n, 4, 5, "b", channels=channels, default_dtype=_int_dtype(n, 3, "b"))
    yp = _params(n, 6, 7, "y")
    _require_per_tensor(n, ap, "a")
    _require_per_tensor(n, yp, "y")
    acc = n.op(
        "qmatmul", n.input(0), n.input(3), a_zero_point=ap.zps[0], b_zero_point=compact(bp.zps)
    )
    rank = n.b.types[acc].rank
    return [requantize(n, acc, ap.scales[0], bp.scales, yp, axis=rank - 1)]


@converter("MatMulInteger", since=10)
def matmul_integer(n: OnnxNode) -> list[str]:
    """qmatmul: the int32 accumulator; a's zero point per tensor (ONNX also allows per row,
    which onnxruntime does not implement either)."""
    _int_dtype(n, 0, "A")
    _int_dtype(n, 1, "B")
    azp = _zero_points(n, 2, "a", 1)
    cols = n.shape(1)[-1] if n.rank(1) >= 2 else 1
    bzp = _zero_points(n, 3, "b", cols)
    return [n.op("qmatmul", n.input(0), n.input(1), a_zero_point=azp[0], b_zero_point=compact(bzp))]
