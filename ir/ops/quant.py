"""Quantization ops: quantize (float -> int), dequantize (int -> float) and requantize
(int32 accumulator, or a narrow int being rescaled -> narrow int, through a fixed-point
multiplier).

Design (docs/quantization_numerics.md has the arithmetic and its sources):

- Scales and zero points of `quantize` / `dequantize` are attributes, per tensor or per axis.
  Attributes are what type inference sees, so the integer value a `quantize` makes carries its
  `QuantParams` in its type, and every later pass and renderer reads them there.
- `requantize` (TOSA's RESCALE) takes its fixed-point multipliers and shifts as int32 operands
  that broadcast against its input (`[1, C, 1, 1]` per output channel of a conv, `[1, N]` per
  column of a matmul, `[]` per tensor). They are derived numbers, not quantization parameters;
  as operands they are ordinary constants that kernels index like any tensor (the loop IR has
  no constant tables), and same-shaped layers share one kernel. The output's own scale
  (`scale`) and zero points are attributes, for its type.
- All arithmetic comes from `quant_math`, where each formula is written once for numpy (the
  references here) and for the loop IR (the lowerings here). The kernels bind the formulas'
  intermediates with `Let`, so they are statement bodies, not `OpDef.scalar` expressions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from modelc.errors import ShapeError, UnsupportedTypeError
from modelc.ir import dtypes as D
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import BROADCAST, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import broadcast_index, broadcast_shapes, parallel_nest, params_for
from modelc.ir.ops.nn import loop_kind
from modelc.ir.ops.quant_math import (
    NUMPY,
    ROUNDINGS,
    LoopArith,
    channel_table,
    dequantize_formula,
    int_range,
    quantize_formula,
    requantize_formula,
)
from modelc.ir.types import QuantParams, TensorType

# Element types a quantized tensor may have (4-bit types live one per byte).
QUANT_DTYPES = (D.i8, D.u8, D.i16, D.u16, D.i4, D.u4)
DEQUANT_OUT = (D.f32, D.f16, D.f64)
FLOAT_IN = (D.f32, D.f16, D.bf16, D.f64)


# ---- quantization parameters ---------------------------------------------------------------------


def check_params(op: str, shape: Sequence[int], a: Attrs, dt: DType) -> None:
    """Scale and zero point lists agree with each other, the axis and the int dtype."""
    scale, zp, axis = a["scale"], a["zero_point"], a["axis"]
    if len(scale) != len(zp) or not scale:
        raise ShapeError(
            f"{op}: {len(scale)} scales and {len(zp)} zero points; give one of each per tensor "
            "or per channel"
        )
    if axis is None:
        if len(scale) != 1:
            raise ShapeError(f"{op}: {len(scale)} scales need an axis (per-axis quantization)")
    else:
        if not 0 <= axis < len(shape):
            raise ShapeError(f"{op}: axis {axis} out of range for shape {tuple(shape)}")
        if len(scale) != shape[axis]:
            raise ShapeError(
                f"{op}: {len(scale)} scales for axis {axis} of shape {tuple(shape)} "
                f"(needs {shape[axis]})"
            )
    if any(not (math.isfinite(s) and s > 0) for s in scale):
        raise ShapeError(f"{op}: scales must be finite and positive, got {list(scale)}")
    lo, hi = int_range(dt)
    if any(not lo <= z <= hi for z in zp):
        raise ShapeError(f"{op}: zero points {list(zp)} do not fit {dt} [{lo}, {hi}]")


def quant_params(a: Attrs, dt: DType) -> QuantParams:
    """The `QuantParams` a quantize's attributes describe, for the integer value's type."""
    zp = tuple(int(z) for z in a["zero_point"])
    return QuantParams(
        tuple(a["scale"]), zp, a["axis"], bits=dt.bits, symmetric=all(z == 0 for z in zp)
    )


def _broadcast_params(a: Attrs, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale float32, zero point int64), shaped to broadcast along the quantization axis."""
    scale = np.asarray(a["scale"], np.float32)
    zp = np.asarray(a["zero_point"], np.int64)
    if a["axis"] is None:
        return scale.reshape(()), zp.reshape(())
    shape = [1] * ndim
    shape[a["axis"]] = -1
    return scale.reshape(shape), zp.reshape(shape)


Formula = Callable[[LoopArith, list[Expr], Expr], Expr]


def _element(req: LowerRequest, fn: Formula, loads: list[Expr], channel: Expr, index: Expr) -> Stmt:
    """`out0[index] = fn(...)` with the formula's intermediates bound around the store."""
    A = LoopArith()
    return A.wrap(L.Store("out0", index, fn(A, loads, channel)))


def _pointwise_kernel(req: LowerRequest, fn: Formula) -> Kernel:
    """out0[i] = fn(in0[b0(i)], in1[b1(i)], ...) with numpy broadcasting of the inputs: one flat
    loop when every input has the output's shape, else the nest over the output's shape."""
    out_t = req.out_types[0]
    shape = out_t.shape
    zero = L.Const(0)
    if all(t.shape == shape for t in req.in_types):

        def flat(idx: list[Expr]) -> Stmt:
            i = idx[0] if idx else zero
            loads = [L.Load(f"in{k}", i, t.dtype) for k, t in enumerate(req.in_types)]
            return _element(req, fn, loads, zero, i)

        nest = parallel_nest((out_t.size,) if shape else (), flat, req.schedule, 4)
    else:

        def nested(idx: list[Expr]) -> Stmt:
            loads = [
                L.Load(f"in{k}", broadcast_index(idx, t.shape, len(shape)), t.dtype)
                for k, t in enumerate(req.in_types)
            ]
            return _element(req, fn, loads, zero, L.flat_index(idx, shape))

        nest = parallel_nest(shape, nested, req.schedule, 4)
    return Kernel(req.kernel_name, params_for(req), nest, (("op", req.node.op),))


def _axis_kernel(req: LowerRequest, fn: Formula) -> Kernel:
    """out0[i] = fn(in0[i], c) with c the index along the quantization axis: the nest is
    (outer, c, inner), so per-channel constants are computed once per channel."""
    x_t, out_t = req.in_types[0], req.out_types[0]
    axis = req.node.attrs["axis"]
    shape = x_t.shape
    outer, c, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])
    o, ch, r = Var("o"), Var("c"), Var("r")
    idx = L.add(L.mul(L.add(L.mul(o, c), ch), inner), r)
    store = _element(req, fn, [L.Load("in0", idx, x_t.dtype)], ch, idx)
    body: Stmt = L.For(r, L.Const(0), L.Const(inner), store, loop_kind(req, inner, vector=True))
    body = L.For(ch, L.Const(0), L.Const(c), body)
    kind = "parallel" if req.schedule.parallel and outer > 1 else "serial"
    body = L.For(o, L.Const(0), L.Const(outer), body, kind, (("work", out_t.size),))
    return Kernel(req.kernel_name, params_for(req), body, (("op", req.node.op),))


ParamFormula = Callable[[LoopArith, Expr, Expr, Expr], Expr]


def _lower_params(req: LowerRequest, fn: ParamFormula) -> Kernel:
    """Lower a per-tensor or per-axis op whose element function is `fn(A, x, scale, zp)`."""
    a = req.node.attrs
    if a["axis"] is None:
        s = L.Const(float(a["scale"][0]), D.f32)
        zp = L.Const(int(a["zero_point"][0]), D.i64)
        return _pointwise_kernel(req, lambda A, xs, c: fn(A, xs[0], s, zp))

    def per_channel(A: LoopArith, xs: list[Expr], c: Expr) -> Expr:
        s = channel_table(a["scale"], c, D.f32)
        zp = channel_table(a["zero_point"], c, D.i64)
        return fn(A, xs[0], s, zp)

    return _axis_kernel(req, per_channel)


PARAM_ATTRS = {
    "scale": AttrSpec("floats", doc="one per tensor, or one per channel along axis"),
    "zero_point": AttrSpec("ints", doc="as many as scales"),
    "axis": AttrSpec("int", None, doc="the channel axis (non-negative), or none per tensor"),
}


# ---- quantize ------------------------------------------------------------------------------------


def _infer_quantize(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    (x,) = types
    assert x is not None
    to: DType = a["to"]
    if x.dtype not in FLOAT_IN:
        raise UnsupportedTypeError(f"quantize: takes a float tensor, got {x.dtype}")
    if to not in QUANT_DTYPES:
        raise UnsupportedTypeError(
            f"quantize: cannot quantize to {to}; use one of {', '.join(map(str, QUANT_DTYPES))}"
        )
    check_params("quantize", x.shape, a, to)
    return [TensorType(x.shape, to, quant_params(a, to))]


def _quantize_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    (x,) = xs
    assert x is not None
    to: DType = a["to"]
    scale, zp = _broadcast_params(a, x.ndim)
    with np.errstate(invalid="ignore"):
        q = quantize_formula(NUMPY, x.astype(np.float32), scale, zp, *int_range(to))
    return [np.asarray(q).astype(to.numpy)]


def _lower_quantize(req: LowerRequest) -> Kernel:
    to: DType = req.node.attrs["to"]
    qmin, qmax = int_range(to)

    def scalar(A: LoopArith, x: Expr, s: Expr, zp: Expr) -> Expr:
        return L.cast(to, quantize_formula(A, L.cast(D.f32, x), s, zp, qmin, qmax))

    return _lower_params(req, scalar)


register_op(
    OpDef(
        name="quantize",
        infer=_infer_quantize,
        reference=_quantize_ref,
        attrs={**PARAM_ATTRS, "to": AttrSpec("dtype", doc="i8 u8 i16 u16 i4 u4")},
        lower=_lower_quantize,
        doc="ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zero_point) in float32; "
        "NaN gives the lowest value. The result's type carries the quantization parameters.",
    )
)


# ---- dequantize ----------------------------------------------------------------------------------


def _infer_dequantize(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    (x,) = types
    assert x is not None
    to: DType = a["to"]
    if x.dtype not in (*QUANT_DTYPES, D.i32):
        raise UnsupportedTypeError(
            f"dequantize: takes an integer tensor of {', '.join(map(str, QUANT_DTYPES))} or "
            f"i32, got {x.dtype}"
        )
    if to not in DEQUANT_OUT:
        raise UnsupportedTypeError(f"dequantize: cannot produce {to}; use f32, f16 or f64")
    check_params("dequantize", x.shape, a, x.dtype)
    return [TensorType(x.shape, to)]


def _dequantize_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    (x,) = xs
    assert x is not None
    scale, zp = _broadcast_params(a, x.ndim)
    y = dequantize_formula(NUMPY, x.astype(np.int64), scale, zp)
    return [np.asarray(y).astype(a["to"].numpy)]


def _lower_dequantize(req: LowerRequest) -> Kernel:
    to: DType = req.node.attrs["to"]

    def scalar(A: LoopArith, x: Expr, s: Expr, zp: Expr) -> Expr:
        return L.cast(to, dequantize_formula(A, L.cast(D.i64, x), s, zp))

    return _lower_params(req, scalar)


register_op(
    OpDef(
        name="dequantize",
        infer=_infer_dequantize,
        reference=_dequantize_ref,
        attrs={**PARAM_ATTRS, "to": AttrSpec("dtype", D.f32, doc="f32 (default), f16 or f64")},
        lower=_lower_dequantize,
        doc="ONNX DequantizeLinear: float32(x - zero_point) * scale, then cast to `to`.",
    )
)


# ---- requantize ----------------------------------------------------------------------------------


def requantize_bounds(a: Attrs) -> tuple[int, int]:
    """The clamp [lo, hi]: `min` / `max` where given (a fused ReLU sets min to the zero point),
    else the output dtype's range."""
    lo, hi = int_range(a["to"])
    if a["min"] is not None:
        lo = max(lo, int(a["min"]))
    if a["max"] is not None:
        hi = min(hi, int(a["max"]))
    return lo, hi


def _infer_requantize(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    acc, mult, shift = types
    assert acc is not None and mult is not None and shift is not None
    to: DType = a["to"]
    if acc.dtype not in (*QUANT_DTYPES, D.i32):
        raise UnsupportedTypeError(f"requantize: takes an integer tensor, got {acc.dtype}")
    for name, t in (("multiplier", mult), ("shift", shift)):
        if t.dtype != D.i32:
            raise UnsupportedTypeError(f"requantize: the {name} must be i32, got {t.dtype}")
    izp = int(a["input_zero_point"])
    if not int_range(acc.dtype)[0] <= izp <= int_range(acc.dtype)[1]:
        raise ShapeError(f"requantize: input zero point {izp} does not fit {acc.dtype}")
    if to not in QUANT_DTYPES:
        raise UnsupportedTypeError(f"requantize: cannot produce {to}")
    if broadcast_shapes(acc.shape, mult.shape, shift.shape) != acc.shape:
        raise ShapeError(
            f"requantize: multiplier {mult.shape} and shift {shift.shape} must broadcast to the "
            f"accumulator's shape {acc.shape}"
        )
    lo, hi = requantize_bounds(a)
    zp = int(a["zero_point"])
    if lo > hi or not lo <= zp <= hi:
        raise ShapeError(f"requantize: zero point {zp} and clamp [{lo}, {hi}] do not fit {to}")
    if a["rounding"] not in ROUNDINGS:
        raise ShapeError(f"requantize: rounding {a['rounding']!r} is not one of {ROUNDINGS}")
    if a["scale"] < 0 or not math.isfinite(a["scale"]):
        raise ShapeError(f"requantize: scale must be finite and >= 0, got {a['scale']}")
    quant = None
    if a["scale"] > 0:
        quant = QuantParams((a["scale"],), (zp,), None, bits=to.bits, symmetric=zp == 0)
    return [TensorType(acc.shape, to, quant)]


def _requantize_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    acc, mult, shift = (np.asarray(x).astype(np.int64) for x in xs)
    zp, (lo, hi), izp = int(a["zero_point"]), requantize_bounds(a), int(a["input_zero_point"])
    y = requantize_formula(NUMPY, acc, mult, shift, zp, lo, hi, a["rounding"], izp)
    return [np.broadcast_to(y, acc.shape).astype(a["to"].numpy)]


def _lower_requantize(req: LowerRequest) -> Kernel:
    a = req.node.attrs
    zp, (lo, hi), izp = int(a["zero_point"]), requantize_bounds(a), int(a["input_zero_point"])

    def formula(A: LoopArith, xs: list[Expr], c: Expr) -> Expr:
        acc, mult, shift = (L.cast(D.i64, x) for x in xs)
        y = requantize_formula(A, acc, mult, shift, zp, lo, hi, a["rounding"], izp)
        return L.cast(a["to"], y)

    return _pointwise_kernel(req, formula)


register_op(
    OpDef(
        name="requantize",
        infer=_infer_requantize,
        reference=_requantize_ref,
        attrs={
            "zero_point": AttrSpec("int", 0, doc="output zero point"),
            "to": AttrSpec("dtype", doc="output dtype: i8 u8 i16 u16 i4 u4"),
            "min": AttrSpec("int", None, doc="clamp low end (fused ReLU: the zero point)"),
            "max": AttrSpec("int", None, doc="clamp high end"),
            "scale": AttrSpec("float", 0.0, doc="output scale for its type; 0 = not recorded"),
            "rounding": AttrSpec("str", "single", doc="single (TFLite) or double (gemmlowp)"),
            "input_zero_point": AttrSpec("int", 0, doc="subtracted first (narrow int inputs)"),
        },
        num_inputs=(3, 3),
        traits=frozenset({BROADCAST}),
        lower=_lower_requantize,
        doc="clamp(MultiplyByQuantizedMultiplier(x - input_zero_point, multiplier, shift) + "
        "zero_point, min, max) with TFLite's fixed-point arithmetic (double rounding as "
        "gemmlowp, or TFLite's single rounding); x is an int32 accumulator or a narrow int "
        "tensor being rescaled; multiplier and shift are i32 operands that broadcast against "
        "it (per tensor or per channel).",
    )
)
