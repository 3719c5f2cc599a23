"""topk: the k largest (or smallest) elements along one axis, with their indices (ONNX TopK).

Outputs are (values, indices as i64), both of x's shape with the axis cut to k. Order and ties
follow onnxruntime: the selected elements come best first, and equal values come lower index
first (for largest and smallest alike). `sorted=False` leaves the order unspecified in ONNX;
modelc returns the same sorted order then (a valid choice that keeps one semantics). NaN has no
defined order here (comparisons with NaN are false): avoid it in TopK inputs.

The reference is one stable argsort per call. The lowering is k selection passes per row (O(n*k),
no scratch buffer): pass r scans the row for the best element that ranks after the one pass r-1
picked, where "ranks after" means strictly worse, or equal with a higher index. Scanning in index
order and replacing the candidate only on a strictly better value makes ties come lower index
first, as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError, UnsupportedTypeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import i32, i64
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import OPAQUE, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import params_for
from modelc.ir.types import TensorType

OP = "topk"


def _check(x: TensorType, a: Attrs) -> tuple[int, int]:
    axis, k = a["axis"], a["k"]
    if not isinstance(axis, int) or not 0 <= axis < x.rank:
        raise ShapeError(
            f"{OP}: axis {axis!r} is out of range for the rank-{x.rank} input {x.shape} (the "
            "frontend must make it non-negative)"
        )
    if not isinstance(k, int) or not 0 <= k <= x.shape[axis]:
        raise ShapeError(
            f"{OP}: k={k!r} must lie in [0, {x.shape[axis]}] (axis {axis} of {x.shape})"
        )
    return axis, k


def _infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    (x,) = types
    assert x is not None
    if x.dtype.kind == "bool":
        raise UnsupportedTypeError(f"{OP}: takes a numeric tensor, got bool")
    axis, k = _check(x, a)
    shape = x.shape[:axis] + (k,) + x.shape[axis + 1 :]
    return [TensorType(shape, x.dtype), TensorType(shape, i64)]


def _reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    (x,) = xs
    assert x is not None
    axis, k = a["axis"], a["k"]
    if a["largest"]:
        # Descending with ties lower index first: a stable ascending sort of the reversed axis,
        # read backwards.
        rev = np.flip(x, axis)
        order = np.flip(np.argsort(rev, axis=axis, kind="stable"), axis)
        order = x.shape[axis] - 1 - order
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return [np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)]


def _lower(req: LowerRequest) -> Kernel:
    x_t = req.in_types[0]
    a = req.node.attrs
    axis, k = _check(x_t, a)
    dt = x_t.dtype
    n = x_t.shape[axis]
    outer, inner = math.prod(x_t.shape[:axis]), math.prod(x_t.shape[axis + 1 :])
    rows = outer * inner
    row, r, j = Var("row"), Var("r"), Var("j")
    xb, ob, v = Var("xb"), Var("ob"), Var("v", dt)
    pv, pi = Var("pv", dt), Var("pi")
    best, besti = L.Load("bv", L.Const(0), dt), L.Load("bi", L.Const(0), i32)

    def better(p: Expr, q: Expr) -> Expr:
        return L.gt(p, q) if a["largest"] else L.lt(p, q)

    # Candidate j ranks after the previous pick (pv at index pi), or there is none (r == 0).
    after = L.BinOp(
        "||",
        L.eq(r, 0),
        L.BinOp("||", better(pv, v), L.land(L.eq(v, pv), L.gt(j, pi))),
    )
    take = L.land(after, L.BinOp("||", L.lt(besti, 0), better(v, best)))
    scan = L.For(
        j,
        L.Const(0),
        L.Const(n),
        L.Let(
            v,
            L.Load("in0", L.add(xb, L.mul(j, inner)), dt),
            L.If(take, L.seq(L.Store("bv", L.Const(0), v), L.Store("bi", L.Const(0), j))),
        ),
    )
    prev = L.add(ob, L.mul(L.maximum(L.sub(r, 1), 0), inner))
    out = L.add(ob, L.mul(r, inner))
    select = L.seq(
        L.Store("bi", L.Const(0), L.Const(-1)),
        L.Store("bv", L.Const(0), L.Const(0.0 if dt.is_float else 0, dt)),
        scan,
        L.Store("out0", out, best),
        L.Store("out1", out, L.cast(i64, besti)),
    )
    body: Stmt = L.Let(
        pv,
        L.Load("out0", prev, dt),
        L.Let(pi, L.cast(i32, L.Load("out1", prev, i64)), select),
    )
    body = L.For(r, L.Const(0), L.Const(k), body)
    body = L.Allocate("bv", dt, 1, "register", L.Allocate("bi", i32, 1, "register", body))
    # row -> (o, i): x row base o*n*inner + i, output row base o*k*inner + i
    o_e: Expr = L.div(row, inner) if inner > 1 else row
    i_e: Expr = L.mod(row, inner) if inner > 1 else L.Const(0)
    body = L.Let(
        xb,
        L.add(L.mul(o_e, n * inner), i_e),
        L.Let(ob, L.add(L.mul(o_e, k * inner), i_e), body),
    )
    work = rows * n * max(k, 1)
    kind = "parallel" if req.schedule.parallel and rows > 1 else "serial"
    nest = L.For(row, L.Const(0), L.Const(rows), body, kind, (("work", work),))
    if k == 0 or rows == 0:
        nest = L.Seq(())
    return Kernel(req.kernel_name, params_for(req), nest, (("op", OP),))


register_op(
    OpDef(
        name=OP,
        infer=_infer,
        reference=_reference,
        attrs={
            "k": AttrSpec("int", doc="how many elements to keep (0..dim)"),
            "axis": AttrSpec("int", doc="non-negative axis"),
            "largest": AttrSpec("bool", True, doc="the largest (else the smallest) elements"),
            "sorted": AttrSpec("bool", True, doc="ONNX leaves the order open when false"),
        },
        num_outputs=2,
        traits=frozenset({OPAQUE}),
        lower=_lower,
        doc="ONNX TopK: (values, i64 indices) of the k best elements along `axis`, best first, "
        "ties lower index first (onnxruntime's order); sorted=false gives the same order.",
    )
)
