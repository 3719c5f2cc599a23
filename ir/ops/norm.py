"""layer_norm: normalization over the trailing axes, with optional scale and shift.

    y = (x - mean) / sqrt(var + epsilon) * gamma + beta     (mean, var over axes [axis, rank))

Frontends import ONNX LayerNormalization as its decomposition (reduce_mean, sub, mul,
reduce_mean, add, sqrt, reciprocal, mul, mul, add: ten nodes, each a kernel and a trip through
memory); `fuse-patterns` recognizes that subgraph (and the torch / ONNX spellings of it) and
makes it this one op, which lowers to one kernel reading each row three times from cache.

The lowering is the numerically stable two-pass form per row: the mean first, then the sum of
squared deviations (never E[x^2] - E[x]^2, which cancels catastrophically when |mean| >> std),
then one sweep writing the output; values are shifted by the row's first element before
summing, so a large common offset costs no precision in float32 either. 16-bit floats
accumulate in float32 (ONNX's stash_type=1). gamma and beta broadcast into the normalized shape
x.shape[axis:] (numpy rules, so [C] for the last axis, or the full normalized shape).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType, f32
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import broadcast_index, params_for, row_major_strides, same_dtype
from modelc.ir.ops.nn import require_float
from modelc.ir.types import TensorType


def _check_affine(t: TensorType, norm: tuple[int, ...], what: str) -> None:
    """gamma / beta must broadcast into the normalized shape without growing it."""
    if t.rank > len(norm):
        raise ShapeError(
            f"layer_norm: {what} {t.shape} has more dims than the normalized shape {norm}"
        )
    try:
        grown = np.broadcast_shapes(t.shape, norm)
    except ValueError:
        grown = None
    if grown != norm:
        raise ShapeError(f"layer_norm: {what} {t.shape} does not broadcast to {norm}")


def _infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    x = types[0]
    assert x is not None
    require_float(x, "layer_norm")
    axis = int(a["axis"])
    if not 0 <= axis < x.rank:
        raise ShapeError(f"layer_norm: axis {axis} out of range for shape {x.shape}")
    norm = x.shape[axis:]
    for t, what in zip(types[1:], ("gamma", "beta")):
        if t is not None:
            _check_affine(t, norm, what)
    same_dtype(types, "layer_norm")
    return [TensorType(x.shape, x.dtype)]


def _reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    assert x is not None
    gamma = xs[1] if len(xs) > 1 else None
    beta = xs[2] if len(xs) > 2 else None
    axes = tuple(range(int(a["axis"]), x.ndim))
    xd = x.astype(np.float64)
    mean = xd.mean(axis=axes, keepdims=True)
    centered = xd - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)
    y = centered / np.sqrt(var + float(a["epsilon"]))
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return [y.astype(x.dtype)]


def _affine_index(j: Expr, shape: tuple[int, ...], norm: tuple[int, ...]) -> Expr:
    """Index into a gamma/beta of `shape` for the element at flat position j of a row."""
    size = math.prod(shape)
    if size == math.prod(norm):
        return j
    if size == 1:
        return L.Const(0)
    strides = row_major_strides(norm)
    dims = [L.mod(L.div(j, s), n) for s, n in zip(strides, norm)]
    return broadcast_index(dims, shape, len(norm))


def _lower(req: LowerRequest) -> Kernel:
    x_t = req.in_types[0]
    a = req.node.attrs
    axis = int(a["axis"])
    dt = x_t.dtype
    acc_t: DType = dt if dt.itemsize >= 4 else f32
    norm = x_t.shape[axis:]
    outer, inner = math.prod(x_t.shape[:axis]), math.prod(norm)
    present = [bool(i) for i in req.node.inputs[1:3]] + [False] * (3 - len(req.node.inputs))
    names = iter(f"in{k}" for k in range(1, len(req.in_types)))
    gamma = next(names) if present[0] else None
    beta = next(names) if present[1] else None

    o, j = Var("o"), Var("j")
    base, pivot = Var("base"), Var("pivot", acc_t)
    mean, rstd = Var("mean", acc_t), Var("rstd", acc_t)
    # x - pivot is exact for x near the row's first element (Sterbenz), so the sums below stay
    # accurate even when |mean| >> std; `mean` is the mean of x - pivot, never rounded to x's
    # magnitude.
    xv = L.sub(L.cast(acc_t, L.Load("in0", L.add(base, j), dt)), pivot)
    acc = L.Load("acc", L.Const(0), acc_t)
    zero = L.Const(0.0, acc_t)
    vec = "vectorized" if req.schedule.vectorize and inner > 1 else "serial"

    def accumulate(term: Expr) -> Stmt:
        return L.seq(
            L.Store("acc", L.Const(0), zero),
            L.For(j, L.Const(0), L.Const(inner), L.Store("acc", L.Const(0), L.add(acc, term))),
        )

    def affine(name: str, k: int) -> Expr:
        index = _affine_index(j, req.in_types[k].shape, norm)
        return L.cast(acc_t, L.Load(name, index, dt))

    y: Expr = L.mul(L.sub(xv, mean), rstd)
    if gamma is not None:
        y = L.mul(y, affine(gamma, 1))
    if beta is not None:
        y = L.add(y, affine(beta, 2 if gamma is not None else 1))
    write = L.For(
        j, L.Const(0), L.Const(inner), L.Store("out0", L.add(base, j), L.cast(dt, y)), vec
    )
    centered = L.sub(xv, mean)
    var = L.div(acc, L.Const(float(inner), acc_t))
    inv = L.div(
        L.Const(1.0, acc_t), L.call("sqrt", L.add(var, L.Const(float(a["epsilon"]), acc_t)))
    )
    row = L.seq(
        accumulate(xv),
        L.Let(
            mean,
            L.div(acc, L.Const(float(inner), acc_t)),
            L.seq(accumulate(L.mul(centered, centered)), L.Let(rstd, inv, write)),
        ),
    )
    row = L.Let(pivot, L.cast(acc_t, L.Load("in0", base, dt)), row)
    body = L.Let(base, L.mul(o, inner), L.Allocate("acc", acc_t, 1, "register", row))
    kind = "parallel" if req.schedule.parallel and outer > 1 else "serial"
    nest = L.For(o, L.Const(0), L.Const(outer), body, kind, (("work", x_t.size * 4),))
    return Kernel(req.kernel_name, params_for(req), nest, (("op", "layer_norm"),))


register_op(
    OpDef(
        name="layer_norm",
        infer=_infer,
        reference=_reference,
        attrs={
            "axis": AttrSpec("int", doc="first normalized axis (non-negative); through the last"),
            "epsilon": AttrSpec("float", 1e-5),
        },
        num_inputs=(1, 3),
        lower=_lower,
        doc="(x - mean) / sqrt(var + epsilon) * gamma + beta over axes [axis, rank); gamma and "
        "beta optional, broadcast into the normalized shape.",
    )
)
