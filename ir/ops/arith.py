"""mod: the remainder of a broadcasting division (ONNX Mod).

`fmod=True` is C's fmod / `%`: the result takes the dividend's sign (truncated division).
`fmod=False` is Python's `%`: the result takes the divisor's sign (floored division), computed
as the C remainder plus the divisor when the two signs differ, for floats too (as the ONNX
reference does). An integer remainder by zero is 0 here (numpy's result; in C it would trap), a
float one NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelc.errors import UnsupportedTypeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType
from modelc.ir.loop import Expr
from modelc.ir.opdef import BROADCAST, ELEMENTWISE, AttrSpec, OpDef, register_op
from modelc.ir.ops.common import broadcast_shapes, elementwise_kernel, same_dtype
from modelc.ir.types import TensorType


def _infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    x, y = types
    assert x is not None and y is not None
    dt = same_dtype([x, y], "mod")
    if dt.kind == "bool":
        raise UnsupportedTypeError("mod: takes numeric tensors, got bool")
    return [TensorType(broadcast_shapes(x.shape, y.shape), dt)]


def _reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    x, y = xs
    assert x is not None and y is not None
    with np.errstate(all="ignore"):
        if x.dtype.kind == "f":
            r = np.fmod(x, y)
            if not a["fmod"]:
                r = np.where((r != 0) & ((r < 0) != (y < 0)), r + y, r)
            return [np.asarray(r, dtype=x.dtype)]
        safe = np.where(y == 0, 1, y).astype(x.dtype)
        r = np.fmod(x, safe)  # integer fmod: C's %
        if not a["fmod"]:
            r = np.where((r != 0) & ((r < 0) != (safe < 0)), r + safe, r)
        return [np.where(y == 0, 0, r).astype(x.dtype)]


def _scalar(xs: Sequence[Expr], a: Attrs, dt: DType) -> Expr:
    x, y = xs
    zero = L.Const(0.0 if dt.is_float else 0, dt)
    if dt.is_float:
        r = L.call("fmod", x, y)
    else:
        safe = L.select(L.eq(y, zero), L.Const(1, dt), y)
        r = L.BinOp("%", x, safe)
        y = safe
    if not a["fmod"] and dt.is_signed:
        differ = L.land(L.BinOp("!=", r, zero), L.BinOp("!=", L.lt(r, zero), L.lt(y, zero)))
        r = L.select(differ, L.add(r, y), r)
    if not dt.is_float:
        r = L.select(L.eq(xs[1], zero), zero, r)
    return r


register_op(
    OpDef(
        name="mod",
        infer=_infer,
        reference=_reference,
        attrs={"fmod": AttrSpec("bool", False, doc="C remainder (else Python's)")},
        num_inputs=(2, 2),
        traits=frozenset({ELEMENTWISE, BROADCAST}),
        lower=lambda req: elementwise_kernel(
            req, lambda xs: _scalar(xs, req.node.attrs, req.in_types[0].dtype)
        ),
        scalar=_scalar,
        doc="ONNX Mod with numpy broadcasting: fmod=True takes the dividend's sign, fmod=False "
        "the divisor's; an integer remainder by zero is 0.",
    )
)
