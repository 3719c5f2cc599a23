"""Reductions: reduce_sum/mean/max/min/prod over a set of axes, softmax / log_softmax over one
axis, and argmax / argmin.

Reduce lowerings first merge adjacent dims that are both reduced or both kept (and drop size-1
dims): in row-major order such runs are contiguous, so e.g. a global average pool over (H, W) of
NCHW becomes one kept run N*C and one reduced run H*W. The nest then walks the input in
row-major order. When the innermost run is reduced it accumulates in a register (one store per
output); when it is kept the inner loop is a contiguous, vectorizable `out[j] op= x[.., j]`.

Softmax-like ops split the shape into (outer, axis, inner). For the last axis (inner == 1) the
running max and sum are register scalars; otherwise they are `inner`-long scratch rows so every
pass over the axis is a contiguous, vectorizable loop over inner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from modelc.errors import ShapeError, UnsupportedTypeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType, i64
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import REDUCTION, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import index_vars, params_for
from modelc.ir.types import TensorType

Combine = Callable[[Expr, Expr], Expr]


def _numeric(t: TensorType, op: str) -> None:
    if t.dtype.kind == "bool":
        raise UnsupportedTypeError(f"{op}: takes a numeric tensor, got bool")


def _axes(a: Attrs, rank: int, op: str) -> tuple[int, ...]:
    """The reduced axes; empty means all. The frontend normalizes them (sorted, >= 0)."""
    axes = tuple(int(v) for v in a["axes"])
    if any(not 0 <= v < rank for v in axes) or list(axes) != sorted(set(axes)):
        raise ShapeError(
            f"{op}: axes {axes} must be sorted, distinct and in [0, {rank}) for rank {rank}"
        )
    return axes or tuple(range(rank))


def _reduced_shape(shape: Sequence[int], axes: Sequence[int], keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if d in axes else s for d, s in enumerate(shape))
    return tuple(s for d, s in enumerate(shape) if d not in axes)


def _one_axis(a: Attrs, t: TensorType, op: str) -> int:
    axis = int(a["axis"])
    if not 0 <= axis < t.rank:
        raise ShapeError(f"{op}: axis {axis} out of range for shape {t.shape}")
    if t.shape[axis] == 0:
        raise ShapeError(f"{op}: axis {axis} of shape {t.shape} is empty")
    return axis


def _split(shape: Sequence[int], axis: int) -> tuple[int, int, int]:
    """(outer, axis extent, inner) element counts around `axis`."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])


def _const(v: float | int, dt: DType) -> Expr:
    return L.Const(float(v) if dt.is_float else int(v), dt)


def _par(req: LowerRequest, extent: int, work: int) -> tuple[str, tuple[tuple[str, int], ...]]:
    kind = "parallel" if req.schedule.parallel and extent > 1 else "serial"
    return kind, (("work", int(work)),)


def _vec(req: LowerRequest, extent: int) -> str:
    return "vectorized" if req.schedule.vectorize and extent > 1 else "serial"


# ---- reduce_* ------------------------------------------------------------------------------------


def _identity(kind: str, dt: DType) -> float | int:
    if kind in ("sum", "mean"):
        return 0
    if kind == "prod":
        return 1
    if dt.is_float:
        return -math.inf if kind == "max" else math.inf
    return dt.min if kind == "max" else dt.max


_COMBINE: dict[str, Combine] = {
    "sum": L.add,
    "mean": L.add,
    "prod": L.mul,
    "max": L.maximum,
    "min": L.minimum,
}


def _runs(shape: Sequence[int], axes: Sequence[int]) -> list[tuple[int, bool]]:
    """(extent, reduced) of maximal runs of adjacent dims alike in being reduced; size-1 dims
    are dropped (they do not move any index)."""
    runs: list[tuple[int, bool]] = []
    for d, s in enumerate(shape):
        if s == 1:
            continue
        red = d in axes
        if runs and runs[-1][1] == red:
            runs[-1] = (runs[-1][0] * s, red)
        else:
            runs.append((s, red))
    return runs


def _mean_np(x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    if x.dtype.kind == "f":
        return np.mean(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    count = math.prod(x.shape[d] for d in axes)
    s = np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    return (np.sign(s) * (np.abs(s) // count)).astype(x.dtype)  # C division truncates


def _reduce_ref(kind: str) -> Callable[[Sequence[np.ndarray | None], Attrs], list[np.ndarray]]:
    fns = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min}

    def reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
        (x,) = xs
        assert x is not None
        axes = _axes(a, x.ndim, f"reduce_{kind}")
        keep = bool(a["keepdims"])
        if kind == "mean":
            return [_mean_np(x, axes, keep)]
        if kind in ("sum", "prod"):
            return [fns[kind](x, axis=axes, keepdims=keep, dtype=x.dtype)]
        return [fns[kind](x, axis=axes, keepdims=keep)]

    return reference


def _infer_reduce(kind: str) -> Callable[[Sequence[TensorType | None], Attrs], list[TensorType]]:
    def infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
        (x,) = types
        assert x is not None
        _numeric(x, f"reduce_{kind}")
        axes = _axes(a, x.rank, f"reduce_{kind}")
        if kind in ("max", "min") and any(x.shape[d] == 0 for d in axes):
            raise ShapeError(f"reduce_{kind}: cannot reduce empty axes of shape {x.shape}")
        return [TensorType(_reduced_shape(x.shape, axes, bool(a["keepdims"])), x.dtype)]

    return infer


def _lower_reduce(kind: str) -> Callable[[LowerRequest], Kernel]:
    def lower(req: LowerRequest) -> Kernel:
        x_t, out_t = req.in_types[0], req.out_types[0]
        dt = x_t.dtype
        axes = _axes(req.node.attrs, x_t.rank, req.node.op)
        count = math.prod(x_t.shape[d] for d in axes)
        runs = _runs(x_t.shape, axes)
        combine = _COMBINE[kind]
        ident = _const(_identity(kind, dt), dt)

        def finish(v: Expr) -> Expr:
            return L.div(v, _const(count, dt)) if kind == "mean" else v

        sizes = [s for s, _ in runs]
        vars_ = index_vars(len(runs))
        kept = [(v, s) for v, (s, red) in zip(vars_, runs) if not red]
        o_idx = L.flat_index([v for v, _ in kept], [s for _, s in kept])
        x_val = L.Load("in0", L.flat_index(vars_, sizes), dt)
        if not runs:  # every dim has size 1: a copy
            return Kernel(
                req.kernel_name,
                params_for(req),
                L.Store("out0", L.Const(0), finish(x_val)),
                (("op", req.node.op),),
            )
        # Outputs are revisited (so need a filled start and a final pass) unless the only
        # reduced run is the innermost one.
        revisit = any(red for _, red in runs[:-1]) or not runs[-1][1]
        if runs[-1][1]:  # innermost run reduced: accumulate in a register
            acc = L.Load("acc", L.Const(0), dt)
            inner = L.For(
                vars_[-1],
                L.Const(0),
                L.Const(sizes[-1]),
                L.Store("acc", L.Const(0), combine(acc, x_val)),
            )
            start = L.Load("out0", o_idx, dt) if revisit else ident
            result = acc if revisit else finish(acc)
            body: Stmt = L.Allocate(
                "acc",
                dt,
                1,
                "register",
                L.seq(L.Store("acc", L.Const(0), start), inner, L.Store("out0", o_idx, result)),
            )
            loops = list(zip(vars_[:-1], runs[:-1]))
        else:  # innermost run kept: a contiguous `out[j] op= x[.., j]` sweep
            body = L.Store("out0", o_idx, combine(L.Load("out0", o_idx, dt), x_val))
            loops = list(zip(vars_, runs))
        for pos, (v, (size, red)) in reversed(list(enumerate(loops))):
            kind_ = "serial"
            ann: tuple[tuple[str, int], ...] = ()
            if pos == 0 and not red:  # distinct iterations write distinct outputs
                kind_, ann = _par(req, size, x_t.size)
            elif pos == len(runs) - 1:
                kind_ = _vec(req, size)
            body = L.For(v, L.Const(0), L.Const(size), body, kind_, ann)
        stmts: list[Stmt] = [body]
        if revisit:
            p = Var("p")
            stmts.insert(0, _fill(req, out_t.size, p, lambda: ident))
            if kind == "mean":
                stmts.append(_fill(req, out_t.size, p, lambda: finish(L.Load("out0", p, dt))))
        return Kernel(req.kernel_name, params_for(req), L.seq(*stmts), (("op", req.node.op),))

    return lower


def _fill(req: LowerRequest, size: int, p: Var, value: Callable[[], Expr]) -> Stmt:
    """`for p in size: out0[p] = value()`."""
    return L.For(p, L.Const(0), L.Const(size), L.Store("out0", p, value()), _vec(req, size))


for _kind in ("sum", "mean", "max", "min", "prod"):
    register_op(
        OpDef(
            name=f"reduce_{_kind}",
            infer=_infer_reduce(_kind),
            reference=_reduce_ref(_kind),
            attrs={
                "axes": AttrSpec("ints", (), "sorted, non-negative; empty reduces every axis"),
                "keepdims": AttrSpec("bool", True),
            },
            traits=frozenset({REDUCTION}),
            lower=_lower_reduce(_kind),
        )
    )


# ---- softmax / log_softmax -----------------------------------------------------------------------


def _infer_softmax(op: str) -> Callable[[Sequence[TensorType | None], Attrs], list[TensorType]]:
    def infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
        (x,) = types
        assert x is not None
        if not x.dtype.is_float:
            raise UnsupportedTypeError(f"{op}: takes a float tensor, got {x.dtype}")
        _one_axis(a, x, op)
        return [TensorType(x.shape, x.dtype)]

    return infer


def _softmax_ref(log: bool) -> Callable[[Sequence[np.ndarray | None], Attrs], list[np.ndarray]]:
    def reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
        (x,) = xs
        assert x is not None
        axis = int(a["axis"])
        shifted = x - np.max(x, axis=axis, keepdims=True)
        e = np.exp(shifted)
        total = np.sum(e, axis=axis, keepdims=True, dtype=x.dtype)
        return [shifted - np.log(total) if log else e / total]

    return reference


def _lower_softmax(log: bool) -> Callable[[LowerRequest], Kernel]:
    """Three passes over the axis per (outer, inner) lane: running max, sum of exp(x - max), then
    the normalized output; the lanes of one outer slice are the contiguous inner loop."""

    def lower(req: LowerRequest) -> Kernel:
        x_t = req.in_types[0]
        dt = x_t.dtype
        outer, n_axis, inner = _split(x_t.shape, int(req.node.attrs["axis"]))
        o, ax, i = Var("o"), Var("a"), Var("i")
        lane: Expr = L.Const(0) if inner == 1 else i
        idx = L.add(L.add(L.mul(o, n_axis * inner), L.mul(ax, inner)), lane)
        x_val = L.Load("in0", idx, dt)
        mx, sm = L.Load("mx", lane, dt), L.Load("sm", lane, dt)

        def lanes(body: Stmt) -> Stmt:
            if inner == 1:
                return body
            return L.For(i, L.Const(0), L.Const(inner), body, _vec(req, inner))

        def over_axis(body: Stmt) -> Stmt:
            return L.For(ax, L.Const(0), L.Const(n_axis), lanes(body))

        e = L.call("exp", L.sub(x_val, mx))
        if log:
            accumulate = L.Store("sm", lane, L.add(sm, e))
            finish = [
                lanes(L.Store("sm", lane, L.call("log", sm))),
                over_axis(L.Store("out0", idx, L.sub(L.sub(x_val, mx), sm))),
            ]
        else:
            # exp once: store it, then add the stored value (libm calls are not CSE'd)
            stored = L.Load("out0", idx, dt)
            accumulate = L.seq(L.Store("out0", idx, e), L.Store("sm", lane, L.add(sm, stored)))
            finish = [over_axis(L.Store("out0", idx, L.div(L.Load("out0", idx, dt), sm)))]
        body = L.seq(
            lanes(L.Store("mx", lane, _const(-math.inf, dt))),
            over_axis(L.Store("mx", lane, L.maximum(mx, x_val))),
            lanes(L.Store("sm", lane, _const(0, dt))),
            over_axis(accumulate),
            *finish,
        )
        scope = "register" if inner == 1 else "local"
        body = L.Allocate("mx", dt, inner, scope, L.Allocate("sm", dt, inner, scope, body))
        kind, ann = _par(req, outer, x_t.size * 8)
        nest = L.For(o, L.Const(0), L.Const(outer), body, kind, ann)
        return Kernel(req.kernel_name, params_for(req), nest, (("op", req.node.op),))

    return lower


for _name, _log in (("softmax", False), ("log_softmax", True)):
    register_op(
        OpDef(
            name=_name,
            infer=_infer_softmax(_name),
            reference=_softmax_ref(_log),
            attrs={"axis": AttrSpec("int", doc="non-negative; opset-13 single-axis semantics")},
            lower=_lower_softmax(_log),
            doc="Numerically stable (max-subtracted) softmax along one axis.",
        )
    )


# ---- argmax / argmin -----------------------------------------------------------------------------


def _infer_arg(op: str) -> Callable[[Sequence[TensorType | None], Attrs], list[TensorType]]:
    def infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
        (x,) = types
        assert x is not None
        _numeric(x, op)
        axis = _one_axis(a, x, op)
        return [TensorType(_reduced_shape(x.shape, (axis,), bool(a["keepdims"])), i64)]

    return infer


def _arg_ref(op: str) -> Callable[[Sequence[np.ndarray | None], Attrs], list[np.ndarray]]:
    fn = np.argmax if op == "argmax" else np.argmin

    def reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
        (x,) = xs
        assert x is not None
        axis, keep = int(a["axis"]), bool(a["keepdims"])
        if a["select_last_index"]:
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis, keepdims=keep)
        else:
            idx = fn(x, axis=axis, keepdims=keep)
        return [idx.astype(np.int64)]

    return reference


def _lower_arg(op: str) -> Callable[[LowerRequest], Kernel]:
    """First (or last, with select_last_index) extreme along the axis, per (outer, inner) lane:
    a strict comparison keeps the first index on ties, a non-strict one the last."""

    def lower(req: LowerRequest) -> Kernel:
        x_t = req.in_types[0]
        dt = x_t.dtype
        a = req.node.attrs
        outer, n_axis, inner = _split(x_t.shape, int(a["axis"]))
        o, ax, i = Var("o"), Var("a"), Var("i")
        lane: Expr = L.Const(0) if inner == 1 else i
        base = L.add(L.mul(o, n_axis * inner), lane)
        v = Var("v", dt)
        best = L.Load("best", L.Const(0), dt)
        better = {
            ("argmax", False): L.gt,
            ("argmax", True): L.ge,
            ("argmin", False): L.lt,
            ("argmin", True): L.le,
        }[(op, bool(a["select_last_index"]))]
        update = L.If(
            better(v, best),
            L.seq(L.Store("best", L.Const(0), v), L.Store("at", L.Const(0), L.cast(i64, ax))),
        )
        scan = L.For(
            ax,
            L.Const(1),
            L.Const(n_axis - 1),
            L.Let(v, L.Load("in0", L.add(base, L.mul(ax, inner)), dt), update),
        )
        scan_lane = L.seq(
            L.Store("best", L.Const(0), L.Load("in0", base, dt)),
            L.Store("at", L.Const(0), L.Const(0, i64)),
            scan,
            L.Store("out0", L.add(L.mul(o, inner), lane), L.Load("at", L.Const(0), i64)),
        )
        body: Stmt = L.Allocate(
            "best", dt, 1, "register", L.Allocate("at", i64, 1, "register", scan_lane)
        )
        if inner > 1:
            body = L.For(i, L.Const(0), L.Const(inner), body)
        kind, ann = _par(req, outer, x_t.size)
        nest = L.For(o, L.Const(0), L.Const(outer), body, kind, ann)
        return Kernel(req.kernel_name, params_for(req), nest, (("op", op),))

    return lower


for _name in ("argmax", "argmin"):
    register_op(
        OpDef(
            name=_name,
            infer=_infer_arg(_name),
            reference=_arg_ref(_name),
            attrs={
                "axis": AttrSpec("int", 0),
                "keepdims": AttrSpec("bool", True),
                "select_last_index": AttrSpec("bool", False),
            },
            num_outputs=1,
            traits=frozenset({REDUCTION}),
            lower=_lower_arg(_name),
            doc="Index (i64) of the first (or last) maximum / minimum along one axis.",
        )
    )
