"""`qmatmul`: integer matmul into int32, numpy matmul shape rules (see quant_conv.py for the
shared semantics of the quantized compute ops).

    acc[..., i, j] = bias[j] + sum_k (a[..., i, k] - a_zero_point) * (b[..., k, j] - b_zp[j])

The lowering is the float matmul's row-oriented "ikj" sweep on int32 (unit stride on both
sides, so gcc vectorizes it). Per-column weight zero points that differ (rare: quantizers make
weights symmetric) switch to one register dot product per output element, so the zero point
of column j is computed once per column rather than once per multiply-add.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError
from modelc.ir import dtypes as D
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import OUT_FUSABLE, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import params_for
from modelc.ir.ops.linalg import _batch_offset, _matmul_shapes, _out_dims, _promoted
from modelc.ir.ops.quant_conv import (
    accumulator_quant,
    check_bias,
    check_operand,
    exact_dtype,
    magnitude,
    zero_point_attr,
)
from modelc.ir.ops.quant_math import channel_table
from modelc.ir.types import TensorType

ACC = D.i32


def _infer_qmatmul(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    x, w = types[0], types[1]
    bias = types[2] if len(types) > 2 else None
    assert x is not None and w is not None
    _, _, _, n, out = _matmul_shapes(x.shape, w.shape)
    bzp = a["b_zero_point"]
    if len(bzp) not in (1, n) or (len(bzp) > 1 and w.rank < 2):
        raise ShapeError(f"qmatmul: {len(bzp)} zero points for b of shape {w.shape}")
    check_operand("qmatmul", "a", x, [a["a_zero_point"]], None)
    check_operand("qmatmul", "b", w, bzp, w.rank - 1)
    check_bias("qmatmul", bias, n)
    return [TensorType(out, ACC, accumulator_quant(x, w, len(out) - 1) if len(out) else None)]


def _qmatmul_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    x, w, bias = (list(xs) + [None])[:3]
    assert x is not None and w is not None
    k = w.shape[-2] if w.ndim > 1 else w.shape[0]
    a_mag = magnitude(D.from_numpy(x.dtype), [a["a_zero_point"]])
    b_mag = magnitude(D.from_numpy(w.dtype), a["b_zero_point"])
    dt = exact_dtype(a_mag, b_mag, k)
    xc = (x.astype(np.int64) - a["a_zero_point"]).astype(dt)
    wc = (w.astype(np.int64) - np.asarray(a["b_zero_point"], np.int64)).astype(dt)
    acc = np.matmul(xc, wc).astype(np.int64)
    if bias is not None:
        acc = acc + (bias.astype(np.int64) if w.ndim > 1 else bias.astype(np.int64)[0])
    return [np.asarray(acc).astype(np.int32)]  # wraps like an int32 sum


def _lower_qmatmul(req: LowerRequest) -> Kernel:
    x_t, w_t = req.in_types[0], req.in_types[1]
    has_bias = len(req.in_types) > 2
    a = req.node.attrs
    batch, m, k, n, _ = _matmul_shapes(x_t.shape, w_t.shape)
    a2, b2 = _promoted(x_t.shape, w_t.shape)
    rows = math.prod(batch) * m
    macs = rows * k * n
    r, kk, j = Var("r"), Var("k"), Var("j")
    ao, bo, co = Var("ao"), Var("bo"), Var("co")
    row_batch = L.div(r, m)
    if math.prod(batch) == 1 or a2[:-2] == batch:
        a_off = L.mul(r, k)
    else:
        a_off = L.add(_batch_offset(row_batch, batch, a2[:-2], m * k), L.mul(L.mod(r, m), k))
    b_off = _batch_offset(row_batch, batch, b2[:-2], k * n)
    azp = L.Const(int(a["a_zero_point"]), ACC)
    a_val = L.sub(L.cast(ACC, L.Load("in0", L.add(ao, kk), x_t.dtype)), azp)

    def b_val(zp: Expr) -> Expr:
        return L.sub(L.cast(ACC, L.Load("in1", L.add(L.add(bo, L.mul(kk, n)), j), w_t.dtype)), zp)

    def init(col: Expr) -> Expr:
        return L.Load("in2", col, ACC) if has_bias else L.Const(0, ACC)

    bzp = a["b_zero_point"]
    vec = "vectorized" if req.schedule.vectorize else "serial"
    if n == 1 or len(set(bzp)) > 1:  # one register dot product per output element
        zb = Var("zb", ACC)
        acc = L.Load("acc", L.Const(0), ACC)
        dot = L.For(
            kk,
            L.Const(0),
            L.Const(k),
            L.Store("acc", L.Const(0), L.add(acc, L.mul(a_val, b_val(zb)))),
        )
        out = L.add(co, j)
        if req.epilogue is None:
            store = L.Store("out0", out, acc)
        else:
            store = req.epilogue(out, _out_dims(r, j, batch, m, x_t.rank, w_t.rank), acc)
        cell = L.Allocate(
            "acc", ACC, 1, "register", L.seq(L.Store("acc", L.Const(0), init(j)), dot, store)
        )
        row: Stmt = L.For(j, L.Const(0), L.Const(n), L.Let(zb, channel_table(bzp, j, ACC), cell))
    else:
        out = L.add(co, j)
        fill = L.For(j, L.Const(0), L.Const(n), L.Store("out0", out, init(j)), vec)
        av = Var("av", ACC)
        update = L.Store(
            "out0", out, L.add(L.Load("out0", out, ACC), L.mul(av, b_val(L.Const(bzp[0], ACC))))
        )
        sweep = L.For(
            kk,
            L.Const(0),
            L.Const(k),
            L.Let(av, a_val, L.For(j, L.Const(0), L.Const(n), update, vec)),
        )
        row = L.seq(fill, sweep)
        if req.epilogue is not None:  # fuse-epilogue: finish the row while it is in cache
            dims = _out_dims(r, j, batch, m, x_t.rank, w_t.rank)
            done = req.epilogue(out, dims, L.Load("out0", out, ACC))
            row = L.seq(row, L.For(j, L.Const(0), L.Const(n), done, vec))
    body = L.Let(ao, a_off, L.Let(bo, b_off, L.Let(co, L.mul(r, n), row)))
    kind = "parallel" if req.schedule.parallel and rows > 1 else "serial"
    nest = L.For(r, L.Const(0), L.Const(rows), body, kind, (("work", macs),))
    return Kernel(req.kernel_name, params_for(req), nest, (("op", "qmatmul"), ("macs", macs)))


register_op(
    OpDef(
        name="qmatmul",
        infer=_infer_qmatmul,
        reference=_qmatmul_ref,
        attrs={
            "a_zero_point": zero_point_attr(0, "zero point of a (per tensor)"),
            "b_zero_point": zero_point_attr((0,), "one, or one per column of b"),
        },
        num_inputs=(2, 3),
        traits=frozenset({OUT_FUSABLE}),
        lower=_lower_qmatmul,
        doc="Integer matmul into int32 (numpy shape rules): bias[j] + sum_k (a - a_zp) * "
        "(b - b_zp[j]).",
    )
)
