"""attention: scaled dot-product attention as one op.

    out = softmax(scale * q @ k^T + mask, axis=-1) @ v

with q [*B, Sq, D], k [*B, Sk, D], v [*B, Sk, Dv], an optional additive float mask that
broadcasts to the scores [*B, Sq, Sk], and out [*B, Sq, Dv]. The batch dims *B (batch, heads)
are equal for q, k and v.

Exporters write attention as matmul, transpose, scale, add, softmax, matmul: the [Sq, Sk] score
matrix of every head goes to memory and is read three times. `fuse-patterns` recognizes that
subgraph; this op's lowering keeps one score row per (batch, head, query row) in a scratch row
instead (Sk elements), and computes it numerically stably: scores, their max, exp(s - max) and
their sum, then the weighted sum of v rows divided by the sum once at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import broadcast_index, params_for, row_major_strides, same_dtype
from modelc.ir.ops.nn import require_float
from modelc.ir.types import TensorType


def _infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    q, k, v = types[0], types[1], types[2]
    mask = types[3] if len(types) > 3 else None
    assert q is not None and k is not None and v is not None
    require_float(q, "attention")
    same_dtype([q, k, v, mask], "attention")
    if not q.rank == k.rank == v.rank >= 2:
        raise ShapeError(
            f"attention: q {q.shape}, k {k.shape} and v {v.shape} need one rank (>= 2)"
        )
    batch = q.shape[:-2]
    if k.shape[:-2] != batch or v.shape[:-2] != batch:
        raise ShapeError(
            f"attention: batch dims of q {q.shape}, k {k.shape} and v {v.shape} differ"
        )
    sq, d = q.shape[-2:]
    sk, dk = k.shape[-2:]
    if dk != d or v.shape[-2] != sk:
        raise ShapeError(
            f"attention: q {q.shape} @ k^T needs k [..., Sk, {d}] and v [..., Sk, Dv] with "
            f"one Sk; got k {k.shape}, v {v.shape}"
        )
    scores = (*batch, sq, sk)
    if mask is not None:
        try:
            grown = np.broadcast_shapes(mask.shape, scores)
        except ValueError:
            grown = None
        if grown != scores:
            raise ShapeError(f"attention: mask {mask.shape} does not broadcast to {scores}")
    return [TensorType((*batch, sq, v.shape[-1]), q.dtype)]


def _reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    q, k, v = xs[0], xs[1], xs[2]
    mask = xs[3] if len(xs) > 3 else None
    assert q is not None and k is not None and v is not None
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * np.asarray(a["scale"], q.dtype)
    if mask is not None:
        s = s + mask
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    p = e / e.sum(axis=-1, keepdims=True, dtype=q.dtype)
    return [np.matmul(p, v).astype(q.dtype)]


def _lower(req: LowerRequest) -> Kernel:
    q_t, k_t, v_t = req.in_types[:3]
    mask_t = req.in_types[3] if len(req.in_types) > 3 else None
    dt = q_t.dtype
    batch = q_t.shape[:-2]
    sq, d = q_t.shape[-2:]
    sk, dv = k_t.shape[-2], v_t.shape[-1]
    rows = math.prod(batch) * sq
    r, j, e, c = Var("r"), Var("j"), Var("e"), Var("c")
    kb, mx, inv = Var("kb"), Var("mx", dt), Var("inv", dt)
    acc = L.Load("acc", L.Const(0), dt)
    vec = "vectorized" if req.schedule.vectorize and dv > 1 else "serial"

    def scratch(name: str, body: Stmt) -> Stmt:
        return L.Allocate(name, dt, 1, "register", body)

    def zero(name: str) -> Stmt:
        return L.Store(name, L.Const(0), L.Const(0.0, dt))

    # score j = scale * dot(q row r, k row j of the same batch) [+ mask]
    q_val = L.Load("in0", L.add(L.mul(r, d), c), dt)
    k_val = L.Load("in1", L.add(L.mul(L.add(kb, j), d), c), dt)
    dot = L.seq(
        zero("acc"),
        L.For(
            c, L.Const(0), L.Const(d), L.Store("acc", L.Const(0), L.add(acc, L.mul(q_val, k_val)))
        ),
    )
    score: Expr = L.mul(acc, L.Const(float(req.node.attrs["scale"]), dt))
    if mask_t is not None:
        score = L.add(score, L.Load("in3", _mask_index(r, j, batch, sq, sk, mask_t.shape), dt))
    row_max = L.Load("rmax", L.Const(0), dt)
    scores = L.For(
        j,
        L.Const(0),
        L.Const(sk),
        scratch(
            "acc",
            L.seq(
                dot,
                L.Store("s", j, score),
                L.Store("rmax", L.Const(0), L.maximum(row_max, L.Load("s", j, dt))),
            ),
        ),
    )
    # p_j = exp(s_j - max), summed
    total = L.Load("sum", L.Const(0), dt)
    exps = L.For(
        j,
        L.Const(0),
        L.Const(sk),
        L.seq(
            L.Store("s", j, L.call("exp", L.sub(L.Load("s", j, dt), mx))),
            L.Store("sum", L.Const(0), L.add(total, L.Load("s", j, dt))),
        ),
    )
    # out row = sum_j p_j * v row j, then / sum
    out = L.add(L.mul(r, dv), e)
    v_val = L.Load("in2", L.add(L.mul(L.add(kb, j), dv), e), dt)
    weighted = L.seq(
        L.For(e, L.Const(0), L.Const(dv), L.Store("out0", out, L.Const(0.0, dt)), vec),
        L.For(
            j,
            L.Const(0),
            L.Const(sk),
            L.For(
                e,
                L.Const(0),
                L.Const(dv),
                L.Store(
                    "out0", out, L.add(L.Load("out0", out, dt), L.mul(L.Load("s", j, dt), v_val))
                ),
                vec,
            ),
        ),
        L.For(
            e,
            L.Const(0),
            L.Const(dv),
            L.Store("out0", out, L.mul(L.Load("out0", out, dt), inv)),
            vec,
        ),
    )
    row = L.seq(
        L.Store("rmax", L.Const(0), L.Const(-math.inf, dt)),
        scores,
        L.Let(
            mx,
            row_max,
            L.seq(
                zero("sum"),
                exps,
                L.Let(inv, L.div(L.Const(1.0, dt), total), weighted),
            ),
        ),
    )
    body = L.Allocate("s", dt, sk, "local", scratch("rmax", scratch("sum", row)))
    body = L.Let(kb, L.mul(L.div(r, sq), sk), body)
    macs = rows * sk * (d + dv)
    kind = "parallel" if req.schedule.parallel and rows > 1 else "serial"
    nest = L.For(r, L.Const(0), L.Const(rows), body, kind, (("work", macs),))
    return Kernel(req.kernel_name, params_for(req), nest, (("op", "attention"), ("macs", macs)))


def _mask_index(
    r: Expr, j: Expr, batch: tuple[int, ...], sq: int, sk: int, shape: tuple[int, ...]
) -> Expr:
    """Flat index into a mask of `shape` broadcast to the scores [*batch, sq, sk] for query
    row r (flat over batch and sq) and key j; only the dims the mask has cost index math."""
    full = (*batch, sq, sk)
    strides = row_major_strides(full[:-1])  # of the row index r over (*batch, sq)
    dims: list[Expr] = [L.mod(L.div(r, s), n) for s, n in zip(strides, full[:-1])]
    return broadcast_index([*dims, j], shape, len(full))


register_op(
    OpDef(
        name="attention",
        infer=_infer,
        reference=_reference,
        attrs={"scale": AttrSpec("float", doc="multiplies q @ k^T before the mask is added")},
        num_inputs=(3, 4),
        lower=_lower,
        doc="softmax(scale * q @ k^T + mask) @ v over the last axis; q [*B,Sq,D], k [*B,Sk,D], "
        "v [*B,Sk,Dv], mask broadcast to [*B,Sq,Sk].",
    )
)
