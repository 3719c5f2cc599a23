"""gather: pick slices of `x` along one axis by an index tensor (ONNX Gather, numpy.take).

The output is `x.shape[:axis] + indices.shape + x.shape[axis + 1:]`. The lowering walks
`(outer, index, inner)`: each index is loaded, wrapped (negative counts from the end) and
clamped once, then the inner run of `prod(x.shape[axis + 1:])` elements is a contiguous copy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import i32, i64
from modelc.ir.loop import INDEX, Expr, Kernel, Stmt, Var
from modelc.ir.opdef import INJECTIVE, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import PARALLEL_MIN_WORK, params_for
from modelc.ir.ops.tensor_copy import result_type
from modelc.ir.types import TensorType


def _axis(x: TensorType, attrs: Attrs) -> int:
    axis = attrs["axis"]
    if not isinstance(axis, int) or not 0 <= axis < x.rank:
        raise ShapeError(
            f"gather: axis {axis!r} is out of range for the rank-{x.rank} input {x.shape} (the "
            "frontend must make it non-negative)"
        )
    return axis


def _infer(types: Sequence[TensorType | None], attrs: Attrs) -> list[TensorType]:
    x, idx = types
    assert x is not None and idx is not None
    axis = _axis(x, attrs)
    if not idx.dtype.is_int:
        raise ShapeError(f"gather: indices must be an integer tensor, got {idx.dtype}")
    if x.shape[axis] == 0 and idx.size > 0:
        raise ShapeError(f"gather: cannot pick from axis {axis} of {x.shape}, which is empty")
    shape = x.shape[:axis] + idx.shape + x.shape[axis + 1 :]

    def quant_axis(a: int) -> int | None:
        if a == axis:
            return None
        return a if a < axis else a + idx.rank - 1

    return [result_type("gather", x, shape, quant_axis)]


def _reference(xs: Sequence[np.ndarray | None], attrs: Attrs) -> list[np.ndarray]:
    x, idx = xs
    assert x is not None and idx is not None
    axis = attrs["axis"]
    n = x.shape[axis]
    idx = idx.astype(np.int64)
    wrapped = np.where(idx < 0, idx + n, idx)
    bad = (wrapped < 0) | (wrapped >= n)
    if bad.any():
        raise ShapeError(
            f"gather: index {int(idx[bad].flat[0])} is out of range for axis {axis} of size {n}"
        )
    return [np.take(x, wrapped, axis=axis)]


def _lower(req: LowerRequest) -> Kernel:
    x, idx_t = req.in_types
    out_t = req.out_types[0]
    axis = _axis(x, req.node.attrs)
    outer = math.prod(x.shape[:axis])
    n = x.shape[axis]
    count = idx_t.size
    inner = math.prod(x.shape[axis + 1 :])
    if out_t.size == 0:
        return Kernel(req.kernel_name, params_for(req), L.Seq(()), (("op", "gather"),))

    o, m, k = Var("i0"), Var("i1"), Var("i2")
    # Unit loops are left out; their index is 0.
    oe: Expr = o if outer > 1 else L.Const(0)
    ke: Expr = k if inner > 1 else L.Const(0)
    # Wrap and clamp in the indices' own width (64-bit indices are not truncated first), so an
    # out-of-range index (undefined in ONNX) never reads outside `x`.
    wide = i64 if idx_t.dtype.bits == 64 else i32
    j = Var("j", wide)
    wrapped = L.select(L.lt(j, L.Const(0, wide)), L.add(j, L.Const(n, wide)), j)
    clamped = L.minimum(L.maximum(wrapped, L.Const(0, wide)), L.Const(n - 1, wide))
    jj = Var("jj", INDEX)
    src = L.add(L.mul(L.add(L.mul(oe, n), jj), inner), ke)
    dst = L.add(L.mul(L.add(L.mul(oe, count), m), inner), ke)
    body: Stmt = L.Store("out0", dst, L.Load("in0", src, out_t.dtype))
    if inner > 1:
        vec = "vectorized" if req.schedule.vectorize else "serial"
        body = L.For(k, L.Const(0), L.Const(inner), body, vec)
    body = L.Let(
        j, L.cast(wide, L.Load("in1", m, idx_t.dtype)), L.Let(jj, L.cast(INDEX, clamped), body)
    )
    # Parallelize the outermost loop that has more than one iteration, if the work is worth it.
    parallel = req.schedule.parallel and out_t.size >= PARALLEL_MIN_WORK
    body = L.For(m, L.Const(0), L.Const(count), body, _kind(parallel and outer == 1))
    if outer > 1:
        body = L.For(o, L.Const(0), L.Const(outer), body, _kind(parallel))
    return Kernel(req.kernel_name, params_for(req), body, (("op", "gather"),))


def _kind(parallel: bool) -> str:
    return "parallel" if parallel else "serial"


register_op(
    OpDef(
        name="gather",
        infer=_infer,
        reference=_reference,
        attrs={"axis": AttrSpec("int", 0, doc="non-negative axis of x to index")},
        num_inputs=(2, 2),
        traits=frozenset({INJECTIVE}),
        lower=_lower,
        doc="ONNX Gather: out = take(x, indices, axis) with negative indices counted from the "
        "end. Indices may be any integer dtype. An index outside [-n, n) is an error in the "
        "reference; the kernel clamps it so it never reads outside x.",
    )
)
