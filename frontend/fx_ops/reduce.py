"""Reduction ATen ops: mean, sum, prod, amax / amin, max / min along a dim, argmax / argmin, var,
any / all, vector norms, topk.

torch reduces every dim when `dim` is None or empty, keeps no dims by default, and computes in
the result's dtype (an integer sum is int64): operands are cast to torch's recorded result
dtype first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from modelc.frontend.fx_ops.node import FxNode
from modelc.frontend.fx_ops.registry import converter, register_converter
from modelc.ir import dtypes as D


def _dims(n: FxNode, rank: int) -> list[int]:
    dim = n.arg("dim")
    if isinstance(dim, int):
        dim = [dim]
    return n.axes(dim, rank)


def _reduce(ir_op: str) -> Callable[[FxNode], str]:
    def convert(n: FxNode) -> str:
        x = n.cast(n.tensor("self"), n.out_dtype)
        rank = n.rank(x)
        if rank == 0:
            return x
        y = n.op(ir_op, x, axes=_dims(n, rank), keepdims=bool(n.arg("keepdim", False)))
        return n.reshape(y, n.out_shape)

    convert.__name__ = f"convert_{ir_op}"
    return convert


REDUCE = [
    (["aten.mean.dim", "aten.mean.default"], "reduce_mean"),
    (["aten.sum.dim_IntList", "aten.sum.default"], "reduce_sum"),
    (["aten.prod.dim_int", "aten.prod.default"], "reduce_prod"),
    (["aten.amax.default", "aten.max.default"], "reduce_max"),
    (["aten.amin.default", "aten.min.default"], "reduce_min"),
]
for _names, _op in REDUCE:
    register_converter(_names, _reduce(_op))


def _arg(n: FxNode, ir_op: str, x: str) -> str:
    """argmax / argmin along `dim`; None flattens first, as torch does."""
    dim = n.arg("dim")
    keepdim = bool(n.arg("keepdim", False))
    if dim is None:
        x, dim, keepdim = n.reshape(x, (math.prod(n.shape(x)),)), 0, False
    y = n.op(ir_op, x, axis=n.axis(dim, n.rank(x)), keepdims=keepdim)
    return n.reshape(y, n.out_shape)


@converter("aten.argmax.default")
def argmax(n: FxNode) -> str:
    return _arg(n, "argmax", n.tensor("self"))


@converter("aten.argmin.default")
def argmin(n: FxNode) -> str:
    return _arg(n, "argmin", n.tensor("self"))


@converter("aten.max.dim")
def max_dim(n: FxNode) -> list[str]:
    """(values, indices) along one dim."""
    x = n.tensor("self")
    values = _reduce("reduce_max")(n)
    return [values, _arg(n, "argmax", x)]


@converter("aten.min.dim")
def min_dim(n: FxNode) -> list[str]:
    x = n.tensor("self")
    values = _reduce("reduce_min")(n)
    return [values, _arg(n, "argmin", x)]


@converter("aten.var.correction")
def var(n: FxNode) -> str:
    """mean((x - mean(x))^2) * count / (count - correction)."""
    x = n.cast(n.tensor("self"), n.out_dtype)
    dims = _dims(n, n.rank(x))
    count = math.prod(n.shape(x)[d] for d in dims)
    correction = n.arg("correction")
    correction = 1 if correction is None else correction
    centered = n.op("sub", x, n.op("reduce_mean", x, axes=dims, keepdims=True))
    y = n.op(
        "reduce_mean",
        n.op("mul", centered, centered),
        axes=dims,
        keepdims=bool(n.arg("keepdim", False)),
    )
    if correction:
        y = n.op("mul", y, n.scalar(count / max(count - correction, 0), n.dtype(y)))
    return n.reshape(y, n.out_shape)


def _bool_reduce(ir_op: str) -> Callable[[FxNode], str]:
    """any / all: reduce_max / reduce_min of the operand as u8 (the IR reduces numbers), then
    back to bool."""

    def convert(n: FxNode) -> str:
        x = n.tensor("self")
        rank = n.rank(x)
        if n.dtype(x) != D.boolean:
            x = n.op("not", n.op("equal", x, n.scalar(0, n.dtype(x))))
        flags = n.cast(x, D.u8)
        if rank == 0:
            return n.cast(flags, D.boolean)
        y = n.op(ir_op, flags, axes=_dims(n, rank), keepdims=bool(n.arg("keepdim", False)))
        return n.reshape(n.cast(y, D.boolean), n.out_shape)

    convert.__name__ = f"convert_bool_{ir_op}"
    return convert


register_converter(
    ["aten.any.dim", "aten.any.dims", "aten.any.default"], _bool_reduce("reduce_max")
)
register_converter(
    ["aten.all.dim", "aten.all.dims", "aten.all.default"], _bool_reduce("reduce_min")
)


@converter("aten.linalg_vector_norm.default")
def vector_norm(n: FxNode) -> str:
    """ord 2: sqrt(sum(x^2)); 1: sum(|x|); inf / -inf: max / min(|x|) (F.normalize uses 2)."""
    x = n.cast(n.tensor("self"), n.out_dtype)
    dims = _dims(n, n.rank(x))
    keepdims = bool(n.arg("keepdim", False))
    order = float(n.arg("ord", 2))
    if order == 2:
        y = n.op("sqrt", n.op("reduce_sum", n.op("mul", x, x), axes=dims, keepdims=keepdims))
    elif order == 1:
        y = n.op("reduce_sum", n.op("abs", x), axes=dims, keepdims=keepdims)
    elif math.isinf(order):
        ir_op = "reduce_max" if order > 0 else "reduce_min"
        y = n.op(ir_op, n.op("abs", x), axes=dims, keepdims=keepdims)
    else:
        raise n.unsupported(f"vector norms of order {order} are not supported (1, 2, inf are)")
    return n.reshape(y, n.out_shape)


@converter("aten.topk.default")
def topk(n: FxNode) -> list[str]:
    """IR topk (values, int64 indices); torch's and onnxruntime's tie order agree (lower index
    first)."""
    x = n.tensor("self")
    out = n.b.add_node(
        "topk",
        [x],
        {
            "k": int(n.arg("k")),
            "axis": n.axis(n.arg("dim", -1), n.rank(x)),
            "largest": bool(n.arg("largest", True)),
            "sorted": bool(n.arg("sorted", True)),
        },
        loc=n.loc,
        hints=[f"{n.loc}_values", f"{n.loc}_indices"],
    )
    return list(out)
