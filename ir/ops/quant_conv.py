"""Integer compute ops: `qconv` and `qmatmul` produce exact int32 accumulators.

    acc = bias + sum((x - x_zero_point) * (w - w_zero_point))

The zero points are attributes: the input's one per tensor, the weight's per tensor or per
output channel (conv: along w's axis 0; matmul: along b's last axis). Requantizing the
accumulator to a narrow type is a separate op (`requantize`), so an int32 output stays available
(ONNX ConvInteger / MatMulInteger) and the epilogue can be fused later like any elementwise
op. When the operand types carry `QuantParams`, their zero points must agree with the
attributes, and the accumulator's type records its scale (x_scale * w_scale per channel, zero
point 0): the scale a bias is quantized with and requantize divides by.

The references compute in float64 through the float ops' im2col / matmul whenever every partial
sum is an integer below 2^53 (always for 8-bit operands: then BLAS is exact), and in int64
otherwise. Accumulators wrap to int32 like the kernels' int32 sums; ONNX requires that they do
not overflow, so that case has no meaning to preserve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError, UnsupportedTypeError
from modelc.ir import dtypes as D
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import OUT_FUSABLE, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import params_for, unravel
from modelc.ir.ops.nn import _conv_ref, channel_loop, conv_window, loop_kind, require_rank
from modelc.ir.ops.quant import QUANT_DTYPES
from modelc.ir.ops.quant_math import channel_table, int_range
from modelc.ir.ops.window import out_loops, tap_loops, tap_offset
from modelc.ir.types import QuantParams, TensorType

EXACT_F64 = 1 << 53


def check_operand(
    op: str, name: str, t: TensorType, zps: Sequence[int], channel_axis: int | None
) -> None:
    """An integer operand of a quantized compute op: its dtype, and its zero points agreeing with
    its type's `QuantParams` (when it has them). Only `channel_axis` may be per channel."""
    if t.dtype not in QUANT_DTYPES:
        raise UnsupportedTypeError(
            f"{op}: {name} must be one of {', '.join(map(str, QUANT_DTYPES))}, got {t.dtype}"
        )
    lo, hi = int_range(t.dtype)
    if any(not lo <= z <= hi for z in zps):
        raise ShapeError(f"{op}: {name} zero points {list(zps)} do not fit {t.dtype}")
    q = t.quant
    if q is None:
        return
    uniform = len(set(q.zero_point)) == 1 and len(set(zps)) == 1
    same = tuple(zps) == q.zero_point or (uniform and zps[0] == q.zero_point[0])
    if not same:
        raise ShapeError(
            f"{op}: {name}'s type has zero points {list(q.zero_point)}, the attribute says "
            f"{list(zps)}"
        )
    if q.axis is not None and len(q.scale) > 1 and q.axis != channel_axis:
        allowed = "per tensor" if channel_axis is None else f"per channel along {channel_axis}"
        raise ShapeError(
            f"{op}: {name} is quantized per channel along axis {q.axis}; it can only be "
            f"quantized {allowed} (the output channels)"
        )


def accumulator_quant(x: TensorType, w: TensorType, out_axis: int) -> QuantParams | None:
    """Scale x_scale * w_scale (per channel along `out_axis` when w is per channel), zero point
    0; None unless both operands carry per-tensor / per-channel parameters."""
    if x.quant is None or w.quant is None or len(x.quant.scale) != 1:
        return None
    scales = tuple(x.quant.scale[0] * s for s in w.quant.scale)  # exact in double
    axis = out_axis if len(scales) > 1 else None
    return QuantParams(scales, (0,) * len(scales), axis, bits=32, symmetric=True)


def check_bias(op: str, bias: TensorType | None, n: int) -> None:
    if bias is not None and (bias.dtype != D.i32 or bias.shape != (n,)):
        raise ShapeError(f"{op}: bias must be i32[{n}], got {bias}")


def exact_dtype(x_max: int, w_max: int, k: int) -> np.dtype:
    """float64 when every partial sum of k products is an integer below 2^53, else int64."""
    return np.dtype(np.float64 if x_max * w_max * max(k, 1) < EXACT_F64 else np.int64)


def magnitude(dt: DType, zps: Sequence[int]) -> int:
    """The largest |q - zero point| an operand of `dt` can have."""
    lo, hi = int_range(dt)
    return max(max(hi - z, z - lo) for z in zps)


def zero_point_attr(default: tuple[int, ...] | int, doc: str) -> AttrSpec:
    return AttrSpec("ints" if isinstance(default, tuple) else "int", default, doc)


# ---- qconv ---------------------------------------------------------------------------------------


def _infer_qconv(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    x, w = types[0], types[1]
    b = types[2] if len(types) > 2 else None
    assert x is not None and w is not None
    require_rank(x, "qconv", 3)
    if w.rank != x.rank:
        raise ShapeError(f"qconv: weight {w.shape} must have the input's rank {x.rank}")
    n, c = x.shape[:2]
    m, group = w.shape[0], int(a["group"])
    if group < 1 or c % group or m % group or w.shape[1] != c // group:
        raise ShapeError(
            f"qconv: input {x.shape}, weight {w.shape} and group {group} do not fit together"
        )
    wzp = a["w_zero_point"]
    if len(wzp) not in (1, m):
        raise ShapeError(f"qconv: {len(wzp)} weight zero points for {m} output channels")
    check_operand("qconv", "x", x, [a["x_zero_point"]], None)
    check_operand("qconv", "w", w, wzp, 0)
    check_bias("qconv", b, m)
    geo = conv_window(x.shape, w.shape, a)
    return [TensorType((n, m, *geo.out_size), D.i32, accumulator_quant(x, w, 1))]


def _qconv_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    x, w, b = (list(xs) + [None])[:3]
    assert x is not None and w is not None
    m = w.shape[0]
    wzp = np.asarray(a["w_zero_point"], np.int64).reshape((-1,) + (1,) * (w.ndim - 1))
    k = math.prod(w.shape[1:])
    x_mag = magnitude(D.from_numpy(x.dtype), [a["x_zero_point"]])
    w_mag = magnitude(D.from_numpy(w.dtype), a["w_zero_point"])
    dt = exact_dtype(x_mag, w_mag, k)
    xc = (x.astype(np.int64) - a["x_zero_point"]).astype(dt)  # padding then reads 0
    wc = (w.astype(np.int64) - wzp).astype(dt)
    (acc,) = _conv_ref([xc, wc], a)
    acc = acc.astype(np.int64)
    if b is not None:
        acc = acc + b.astype(np.int64).reshape((1, m) + (1,) * (x.ndim - 2))
    return [acc.astype(np.int32)]  # wraps like an int32 sum (ONNX: must not overflow)


def _lower_qconv(req: LowerRequest) -> Kernel:
    """The float conv's plane sweep on int32: for each (n, oc) fill the plane with the bias;
    for ic, taps: wv = w - w_zp; for the outputs the tap reads real input for:
    out += wv * (x - x_zp). Taps over padding read the zero point, which contributes nothing,
    so skipping them (as the float conv does) is exact. An epilogue (fuse-epilogue) sweeps the
    finished plane, as in the float conv."""
    x_t, w_t = req.in_types[0], req.in_types[1]
    has_bias = len(req.in_types) > 2
    a = req.node.attrs
    geo = conv_window(x_t.shape, w_t.shape, a)
    acc_t = D.i32
    n, c = x_t.shape[:2]
    m, g = w_t.shape[0], int(a["group"])
    cg, mg = c // g, m // g
    isz, osz = math.prod(geo.in_size), math.prod(geo.out_size)
    macs = n * m * osz * cg * math.prod(geo.kernel)
    ob, xg, xk, ic, p = Var("ob"), Var("xg"), Var("xk"), Var("ic"), Var("p")
    wv, wz = Var("wv", acc_t), Var("wz", acc_t)
    xzp = L.Const(int(a["x_zero_point"]), acc_t)
    vec = loop_kind(req, osz, vector=True)

    def mac(out_idx: Expr, in_idx: Expr) -> Stmt:
        xv = L.sub(L.cast(acc_t, L.Load("in0", in_idx, x_t.dtype)), xzp)
        acc = L.Load("out0", out_idx, acc_t)
        return L.Store("out0", out_idx, L.add(acc, L.mul(wv, xv)))

    def channel(nm: Expr, n_e: Expr, m_e: Expr) -> Stmt:
        def per_tap(ks: list[Expr], bounds: list[tuple[Expr | int, Expr | int]]) -> Stmt:
            if geo.is_dense():
                sweep: Stmt = L.For(p, L.Const(0), L.Const(osz), mac(ob + p, xk + p), vec)
            else:
                sweep = out_loops(
                    geo, bounds, lambda os_, o_off, i_off: mac(ob + o_off, xk + i_off), vec
                )
            w_idx = L.flat_index([m_e, ic, *ks], w_t.shape)
            w_val = L.sub(L.cast(acc_t, L.Load("in1", w_idx, w_t.dtype)), wz)
            x_off = L.add(L.add(xg, L.mul(ic, isz)), tap_offset(geo, ks))
            return L.Let(wv, w_val, L.Let(xk, x_off, sweep))

        taps = L.For(ic, L.Const(0), L.Const(cg), tap_loops(geo, per_tap))
        init = L.Load("in2", m_e, acc_t) if has_bias else L.Const(0, acc_t)
        fill = L.For(p, L.Const(0), L.Const(osz), L.Store("out0", ob + p, init), vec)
        group = L.mul(L.div(m_e, mg), cg) if g > 1 else L.Const(0)
        group_base = L.mul(L.add(L.mul(n_e, c), group), isz)
        plane = L.seq(fill, taps)
        if req.epilogue is not None:  # fuse-epilogue: finish the plane while it is in cache
            dims = [n_e, m_e, *unravel(p, geo.out_size)]
            done = req.epilogue(ob + p, dims, L.Load("out0", ob + p, acc_t))
            plane = L.seq(plane, L.For(p, L.Const(0), L.Const(osz), done, vec))
        body = L.Let(wz, channel_table(a["w_zero_point"], m_e, acc_t), plane)
        return L.Let(ob, L.mul(nm, osz), L.Let(xg, group_base, body))

    nest = channel_loop(req, n, m, macs, channel, name="nm")
    return Kernel(req.kernel_name, params_for(req), nest, (("op", "qconv"), ("macs", macs)))


register_op(
    OpDef(
        name="qconv",
        infer=_infer_qconv,
        reference=_qconv_ref,
        attrs={
            "strides": AttrSpec("ints", doc="one per spatial dim"),
            "pads": AttrSpec("ints", doc="all begins, then all ends"),
            "dilations": AttrSpec("ints", doc="one per spatial dim"),
            "group": AttrSpec("int", 1),
            "x_zero_point": zero_point_attr(0, "input zero point (padding reads it)"),
            "w_zero_point": zero_point_attr((0,), "one, or one per output channel"),
        },
        num_inputs=(2, 3),
        traits=frozenset({OUT_FUSABLE}),
        lower=_lower_qconv,
        doc="Integer N-d convolution into int32: bias[m] + sum((x - x_zp) * (w - w_zp[m])); "
        "padding is the input zero point (contributes 0).",
    )
)
