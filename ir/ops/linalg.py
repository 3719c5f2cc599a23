"""Linear algebra: matmul with numpy semantics (batched, broadcast batch dims, 1-D promotion).

The lowering is the row-oriented "ikj" loop: for each output row (batch x i, the parallel loop),
zero the row, then for each k load a[i, k] once and sweep the contiguous row b[k, :] into the
contiguous output row. The inner loop is unit-stride on both sides, so gcc -O3 vectorizes it
without reassociating any float sum. A matrix-vector product (N == 1) accumulates in a register
instead. Tiling for cache reuse is a schedule for later; the structure keeps the rows explicit
so a tuner can block them. A fused epilogue (bias, activation, residual) runs over each row as
soon as the row is complete, while it is in cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError, UnsupportedTypeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import OUT_FUSABLE, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import (
    broadcast_index,
    broadcast_shapes,
    params_for,
    same_dtype,
    unravel,
)
from modelc.ir.types import TensorType


def _promoted(a: Sequence[int], b: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """numpy's 1-D promotion: a vector a is a row (1, K), a vector b a column (K, 1)."""
    if len(a) == 0 or len(b) == 0:
        raise ShapeError(f"matmul: operands must have rank >= 1, got {tuple(a)} and {tuple(b)}")
    a2 = (1, *a) if len(a) == 1 else tuple(a)
    b2 = (*b, 1) if len(b) == 1 else tuple(b)
    return a2, b2


def _matmul_shapes(
    a: Sequence[int], b: Sequence[int]
) -> tuple[tuple[int, ...], int, int, int, tuple[int, ...]]:
    """(batch shape, M, K, N, output shape) of a @ b."""
    a2, b2 = _promoted(a, b)
    m, k = a2[-2:]
    k2, n = b2[-2:]
    if k != k2:
        raise ShapeError(
            f"matmul: inner dims differ: {tuple(a)} @ {tuple(b)} contracts {k} with {k2}"
        )
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    out = batch + ((m,) if len(a) > 1 else ()) + ((n,) if len(b) > 1 else ())
    return batch, m, k, n, out


def _infer_matmul(types: Sequence[TensorType | None], attrs: Attrs) -> list[TensorType]:
    a, b = types
    assert a is not None and b is not None
    dt = same_dtype([a, b], "matmul")
    if dt.kind == "bool":
        raise UnsupportedTypeError("matmul: takes numeric tensors, got bool")
    return [TensorType(_matmul_shapes(a.shape, b.shape)[4], dt)]


def _matmul_ref(xs: Sequence[np.ndarray | None], attrs: Attrs) -> list[np.ndarray]:
    a, b = xs
    assert a is not None and b is not None
    return [np.matmul(a, b)]


def _batch_offset(
    row_batch: Expr, batch: tuple[int, ...], operand_batch: tuple[int, ...], matrix: int
) -> Expr:
    """Flat offset of the matrix an operand contributes to output batch `row_batch`: the batch
    index unflattened over the output batch shape, then re-flattened over the operand's
    (broadcast) batch shape. Common cases fold to `row_batch * matrix` and 0."""
    if all(d == 1 for d in operand_batch):
        return L.Const(0)
    if operand_batch == batch:
        return L.mul(row_batch, matrix)
    idx = [L.mod(L.div(row_batch, math.prod(batch[d + 1 :])), batch[d]) for d in range(len(batch))]
    return L.mul(broadcast_index(idx, operand_batch, len(batch)), matrix)


def _out_dims(
    r: Expr, j: Expr, batch: tuple[int, ...], m: int, a_rank: int, b_rank: int
) -> list[Expr]:
    """Per-dim index of output element (row r, column j) for an epilogue: the batch index, then
    the row within the matrix and the column, each only where the output has that dim."""
    dims = unravel(L.div(r, m), batch) if batch else []
    if a_rank > 1:
        dims.append(L.mod(r, m) if m > 1 else L.Const(0))
    if b_rank > 1:
        dims.append(j)
    return dims


def _lower_matmul(req: LowerRequest) -> Kernel:
    a_t, b_t = req.in_types
    dt = req.out_types[0].dtype
    batch, m, k, n, _ = _matmul_shapes(a_t.shape, b_t.shape)
    a2, b2 = _promoted(a_t.shape, b_t.shape)
    rows = math.prod(batch) * m
    macs = rows * k * n
    r, kk, j = Var("r"), Var("k"), Var("j")
    ao, bo, co = Var("ao"), Var("bo"), Var("co")
    row_batch = L.div(r, m)
    if math.prod(batch) == 1 or a2[:-2] == batch:  # rows of a are the output rows
        a_off = L.mul(r, k)
    else:
        a_off = L.add(_batch_offset(row_batch, batch, a2[:-2], m * k), L.mul(L.mod(r, m), k))
    b_off = _batch_offset(row_batch, batch, b2[:-2], k * n)
    a_val = L.Load("in0", L.add(ao, kk), dt)
    zero = L.Const(0.0 if dt.is_float else 0, dt)
    if n == 1:  # matrix-vector: the row is one dot product, kept in a register
        acc = L.Load("acc", L.Const(0), dt)
        dot = L.For(
            kk,
            L.Const(0),
            L.Const(k),
            L.Store("acc", L.Const(0), L.add(acc, L.mul(a_val, L.Load("in1", L.add(bo, kk), dt)))),
        )
        if req.epilogue is None:
            store = L.Store("out0", co, acc)
        else:
            dims = _out_dims(r, L.Const(0), batch, m, len(a_t.shape), len(b_t.shape))
            store = req.epilogue(co, dims, acc)
        row: Stmt = L.Allocate(
            "acc", dt, 1, "register", L.seq(L.Store("acc", L.Const(0), zero), dot, store)
        )
    else:
        vec = "vectorized" if req.schedule.vectorize else "serial"
        out = L.add(co, j)
        fill = L.For(j, L.Const(0), L.Const(n), L.Store("out0", out, zero), vec)
        av = Var("av", dt)
        b_val = L.Load("in1", L.add(L.add(bo, L.mul(kk, n)), j), dt)
        update = L.Store("out0", out, L.add(L.Load("out0", out, dt), L.mul(av, b_val)))
        sweep = L.For(
            kk,
            L.Const(0),
            L.Const(k),
            L.Let(av, a_val, L.For(j, L.Const(0), L.Const(n), update, vec)),
        )
        row = L.seq(fill, sweep)
        if req.epilogue is not None:
            dims = _out_dims(r, j, batch, m, len(a_t.shape), len(b_t.shape))
            done = req.epilogue(out, dims, L.Load("out0", out, dt))
            row = L.seq(row, L.For(j, L.Const(0), L.Const(n), done, vec))
    body = L.Let(ao, a_off, L.Let(bo, b_off, L.Let(co, L.mul(r, n), row)))
    kind = "parallel" if req.schedule.parallel and rows > 1 else "serial"
    nest = L.For(r, L.Const(0), L.Const(rows), body, kind, (("work", macs),))
    return Kernel(req.kernel_name, params_for(req), nest, (("op", "matmul"), ("macs", macs)))


register_op(
    OpDef(
        name="matmul",
        infer=_infer_matmul,
        reference=_matmul_ref,
        num_inputs=(2, 2),
        traits=frozenset({OUT_FUSABLE}),
        lower=_lower_matmul,
        doc="numpy matmul: batched with broadcast batch dims; 1-D operands are promoted.",
    )
)
