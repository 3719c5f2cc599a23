"""Element-indexed data movement: gather_elements and scatter_nd (ONNX GatherElements, ScatterND).

gather_elements(x, indices){axis}: out has the indices' shape, and out[i] = x[i with dim `axis`
replaced by indices[i]]. scatter_nd(data, indices, updates){reduction}: out starts as data, then
each row of `indices` (its last dim, k long) names a slice x[i0..ik-1] that takes (or is combined
with: add, mul, max, min) the matching slice of updates, rows in order.

Negative indices count from the end. Out-of-range indices are an error in the references and
clamped in the kernels, which never read or write outside their buffers (as gather does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError, UnsupportedOpError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import i64
from modelc.ir.loop import INDEX, Expr, Kernel, Stmt, Var
from modelc.ir.opdef import OPAQUE, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import parallel_nest, params_for, row_major_strides
from modelc.ir.types import TensorType


def _wrap(idx: np.ndarray, n: int, what: str) -> np.ndarray:
    idx = idx.astype(np.int64)
    wrapped = np.where(idx < 0, idx + n, idx)
    bad = (wrapped < 0) | (wrapped >= n)
    if bad.any():
        raise ShapeError(f"{what}: index {int(idx[bad].flat[0])} is out of range for size {n}")
    return wrapped


def _ir_wrap(j: Expr, n: int) -> Expr:
    """An index expression (i64) wrapped and clamped into [0, n) as a loop index."""
    wrapped = L.select(L.lt(j, L.Const(0, i64)), L.add(j, L.Const(n, i64)), j)
    clamped = L.minimum(L.maximum(wrapped, L.Const(0, i64)), L.Const(max(n - 1, 0), i64))
    return L.cast(INDEX, clamped)


# ---- gather_elements ---------------------------------------------------------------------------


def _infer_gather(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    x, idx = types
    assert x is not None and idx is not None
    axis = a["axis"]
    if not isinstance(axis, int) or not 0 <= axis < x.rank:
        raise ShapeError(f"gather_elements: axis {axis!r} is out of range for rank {x.rank}")
    if not idx.dtype.is_int:
        raise ShapeError(f"gather_elements: indices must be integers, got {idx.dtype}")
    if idx.rank != x.rank or any(
        i > d for k, (i, d) in enumerate(zip(idx.shape, x.shape)) if k != axis
    ):
        raise ShapeError(
            f"gather_elements: indices {idx.shape} must have the rank of x {x.shape} and no "
            f"larger dims except along axis {axis}"
        )
    if x.shape[axis] == 0 and idx.size:
        raise ShapeError(f"gather_elements: axis {axis} of {x.shape} is empty")
    return [TensorType(idx.shape, x.dtype)]


def _gather_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    x, idx = xs
    assert x is not None and idx is not None
    axis = a["axis"]
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = _wrap(idx, x.shape[axis], "gather_elements")
    return [x[tuple(grid)]]


def _gather_lower(req: LowerRequest) -> Kernel:
    x_t, idx_t = req.in_types
    axis = req.node.attrs["axis"]
    strides = row_major_strides(x_t.shape)
    shape = idx_t.shape

    def body(ix: list[Expr]) -> Stmt:
        j = _ir_wrap(
            L.cast(i64, L.Load("in1", L.flat_index(ix, shape), idx_t.dtype)), x_t.shape[axis]
        )
        src: Expr = L.Const(0)
        for d, (v, st) in enumerate(zip(ix, strides)):
            src = L.add(src, L.mul(j if d == axis else v, st))
        return L.Store("out0", L.flat_index(ix, shape), L.Load("in0", src, x_t.dtype))

    nest = parallel_nest(shape, body, req.schedule, 2) if idx_t.size else L.Seq(())
    return Kernel(req.kernel_name, params_for(req), nest, (("op", "gather_elements"),))


register_op(
    OpDef(
        name="gather_elements",
        infer=_infer_gather,
        reference=_gather_ref,
        attrs={"axis": AttrSpec("int", 0, doc="non-negative axis")},
        num_inputs=(2, 2),
        lower=_gather_lower,
        doc="ONNX GatherElements: out[i] = x[i with dim axis replaced by indices[i]].",
    )
)


# ---- scatter_nd ------------------------------------------------------------------------------

REDUCTIONS = {
    "none": None,
    "add": np.add,
    "mul": np.multiply,
    "max": np.maximum,
    "min": np.minimum,
}


def _scatter_dims(data: TensorType, idx: TensorType, upd: TensorType) -> tuple[int, int, int]:
    """(rows q, index length k, slice size)."""
    if idx.rank < 1 or not idx.dtype.is_int:
        raise ShapeError(f"scatter_nd: indices must be an integer tensor of rank >= 1, got {idx}")
    k = idx.shape[-1]
    if k > data.rank:
        raise ShapeError(f"scatter_nd: index rows of length {k} exceed the data rank {data.rank}")
    want = idx.shape[:-1] + data.shape[k:]
    if upd.shape != want:
        raise ShapeError(f"scatter_nd: updates must have shape {want}, got {upd.shape}")
    return math.prod(idx.shape[:-1]), k, math.prod(data.shape[k:])


def _infer_scatter(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    data, idx, upd = types
    assert data is not None and idx is not None and upd is not None
    if upd.dtype != data.dtype:
        raise ShapeError(f"scatter_nd: updates {upd.dtype} must have the data's dtype {data.dtype}")
    if a["reduction"] not in REDUCTIONS:
        raise UnsupportedOpError(
            f"scatter_nd: reduction {a['reduction']!r} is not one of {', '.join(REDUCTIONS)}"
        )
    _scatter_dims(data, idx, upd)
    return [TensorType(data.shape, data.dtype)]


def _scatter_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    data, idx, upd = xs
    assert data is not None and idx is not None and upd is not None
    k = idx.shape[-1]
    out = data.copy()
    rows = idx.reshape(-1, k)
    where = tuple(_wrap(rows[:, d], data.shape[d], "scatter_nd") for d in range(k))
    values = upd.reshape((rows.shape[0],) + data.shape[k:])
    fn = REDUCTIONS[a["reduction"]]
    if fn is None:
        out[where] = values  # duplicates: the last row wins, as in the kernel
    else:
        fn.at(out, where, values)
    return [out]


def _scatter_lower(req: LowerRequest) -> Kernel:
    data_t, idx_t, upd_t = req.in_types
    dt = data_t.dtype
    q, k, size = _scatter_dims(data_t, idx_t, upd_t)
    strides = row_major_strides(data_t.shape)
    i, r, t, base = Var("i"), Var("r"), Var("t"), Var("base")
    copy = L.For(i, L.Const(0), L.Const(data_t.size), L.Store("out0", i, L.Load("in0", i, dt)))
    offset: Expr = L.Const(0)
    for d in range(k):
        j = L.cast(i64, L.Load("in1", L.add(L.mul(r, k), d), idx_t.dtype))
        offset = L.add(offset, L.mul(_ir_wrap(j, data_t.shape[d]), strides[d]))
    dst = L.add(base, t)
    new = L.Load("in2", L.add(L.mul(r, size), t), dt)
    old = L.Load("out0", dst, dt)
    combine = {
        "none": lambda: new,
        "add": lambda: L.add(old, new),
        "mul": lambda: L.mul(old, new),
        "max": lambda: L.maximum(old, new),
        "min": lambda: L.minimum(old, new),
    }[req.node.attrs["reduction"]]()
    slice_loop = L.For(t, L.Const(0), L.Const(size), L.Store("out0", dst, combine))
    # Rows run in order (serially): with duplicate rows the last one wins or all combine.
    rows = L.For(r, L.Const(0), L.Const(q), L.Let(base, offset, slice_loop))
    return Kernel(req.kernel_name, params_for(req), L.seq(copy, rows), (("op", "scatter_nd"),))


register_op(
    OpDef(
        name="scatter_nd",
        infer=_infer_scatter,
        reference=_scatter_ref,
        attrs={"reduction": AttrSpec("str", "none", doc="none, add, mul, max or min")},
        num_inputs=(3, 3),
        traits=frozenset({OPAQUE}),
        lower=_scatter_lower,
        doc="ONNX ScatterND: data with the slices named by the rows of indices replaced by (or "
        "combined with) updates, rows in order.",
    )
)
