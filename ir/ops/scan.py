"""cumsum: running sums along one axis (ONNX CumSum).

`exclusive` leaves the element itself out (the first sum is 0), `reverse` runs from the end. The
lowering walks each line along the axis once, keeping the running sum in a register: the sums are
accumulated in order, in the tensor's dtype, exactly as the reference's sequential numpy.cumsum
(float sums agree to rounding: numpy may pair them differently).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError, UnsupportedTypeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import params_for
from modelc.ir.types import TensorType


def _axis(x: TensorType, a: Attrs) -> int:
    axis = a["axis"]
    if not isinstance(axis, int) or not 0 <= axis < x.rank:
        raise ShapeError(
            f"cumsum: axis {axis!r} is out of range for the rank-{x.rank} input {x.shape} (the "
            "frontend must make it non-negative)"
        )
    return axis


def _infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    (x,) = types
    assert x is not None
    if x.dtype.kind == "bool":
        raise UnsupportedTypeError("cumsum: takes a numeric tensor, got bool")
    _axis(x, a)
    return [TensorType(x.shape, x.dtype)]


def _reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    (x,) = xs
    assert x is not None
    axis = a["axis"]
    y = np.flip(x, axis) if a["reverse"] else x
    s = np.cumsum(y, axis=axis, dtype=x.dtype)
    if a["exclusive"] and x.shape[axis] > 0:
        s = np.concatenate([np.zeros_like(np.take(s, [0], axis)), np.delete(s, -1, axis)], axis)
    return [np.ascontiguousarray(np.flip(s, axis) if a["reverse"] else s)]


def _lower(req: LowerRequest) -> Kernel:
    x_t = req.in_types[0]
    a = req.node.attrs
    axis = _axis(x_t, a)
    dt = x_t.dtype
    n = x_t.shape[axis]
    outer, inner = math.prod(x_t.shape[:axis]), math.prod(x_t.shape[axis + 1 :])
    line, j, base = Var("line"), Var("j"), Var("base")
    pos: Expr = L.sub(n - 1, j) if a["reverse"] else j
    idx = L.add(base, L.mul(pos, inner))
    acc = L.Load("acc", L.Const(0), dt)
    add = L.Store("acc", L.Const(0), L.add(acc, L.Load("in0", idx, dt)))
    store = L.Store("out0", idx, acc)
    step: Stmt = L.seq(store, add) if a["exclusive"] else L.seq(add, store)
    body: Stmt = L.seq(
        L.Store("acc", L.Const(0), L.Const(0.0 if dt.is_float else 0, dt)),
        L.For(j, L.Const(0), L.Const(n), step),
    )
    body = L.Allocate("acc", dt, 1, "register", body)
    o_e: Expr = L.div(line, inner) if inner > 1 else line
    i_e: Expr = L.mod(line, inner) if inner > 1 else L.Const(0)
    body = L.Let(base, L.add(L.mul(o_e, n * inner), i_e), body)
    lines = outer * inner
    kind = "parallel" if req.schedule.parallel and lines > 1 else "serial"
    nest = L.For(line, L.Const(0), L.Const(lines), body, kind, (("work", x_t.size),))
    return Kernel(req.kernel_name, params_for(req), nest, (("op", "cumsum"),))


register_op(
    OpDef(
        name="cumsum",
        infer=_infer,
        reference=_reference,
        attrs={
            "axis": AttrSpec("int", doc="non-negative axis"),
            "exclusive": AttrSpec("bool", False),
            "reverse": AttrSpec("bool", False),
        },
        lower=_lower,
        doc="ONNX CumSum along `axis`; exclusive leaves each element out of its own sum, "
        "reverse sums from the end.",
    )
)
