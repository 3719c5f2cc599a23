"""Helpers shared by op definitions: shape rules and lowering building blocks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from modelc.errors import ShapeError
from modelc.ir import loop as L
from modelc.ir.dtypes import DType
from modelc.ir.loop import Expr, Kernel, Param, Schedule, Stmt, Var
from modelc.ir.opdef import LowerRequest
from modelc.ir.types import TensorType

# Loops whose total work is below this many inner iterations are not worth a thread fork.
PARALLEL_MIN_WORK = 1 << 15


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        listed = ", ".join(str(tuple(s)) for s in shapes)
        raise ShapeError(f"shapes {listed} do not broadcast") from None


def same_dtype(types: Sequence[TensorType | None], what: str) -> DType:
    present = [t for t in types if t is not None]
    dts = {t.dtype for t in present}
    if len(dts) != 1:
        raise ShapeError(f"{what}: operand dtypes differ ({', '.join(sorted(map(str, dts)))})")
    return present[0].dtype


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"axis {axis} out of range for rank {rank}")
    return axis % max(rank, 1)


def params_for(req: LowerRequest) -> tuple[Param, ...]:
    """Kernel params by the convention in0..inK, out0..outM."""
    ins = tuple(Param(f"in{i}", t.dtype, t.size) for i, t in enumerate(req.in_types))
    outs = tuple(Param(f"out{i}", t.dtype, t.size, True) for i, t in enumerate(req.out_types))
    return ins + outs


def index_vars(rank: int, prefix: str = "i") -> list[Var]:
    return [Var(f"{prefix}{d}") for d in range(rank)]


def broadcast_index(idx: Sequence[Expr], in_shape: Sequence[int], out_rank: int) -> Expr:
    """Flat index into an input of `in_shape` broadcast to an output of rank `out_rank`."""
    offset = out_rank - len(in_shape)
    return L.flat_index(list(idx[offset:]), in_shape)


def parallel_nest(
    shape: Sequence[int], body_fn: Callable[[list[Expr]], Stmt], schedule: Schedule, inner_work: int
) -> Stmt:
    """Loop nest over `shape` (row-major) around `body_fn(index vars)`.

    The outermost loop with extent > 1 becomes `parallel` when the whole nest does enough work,
    and the innermost loop `vectorized` when asked; that is the default CPU schedule.
    """
    rank = len(shape)
    vars_ = index_vars(rank)
    body = body_fn(list(vars_))
    if rank == 0:
        return body
    kinds = ["serial"] * rank
    total = int(np.prod(shape)) * max(1, inner_work)
    if schedule.vectorize and shape[-1] > 1:
        kinds[-1] = "vectorized"
    if schedule.parallel and total >= PARALLEL_MIN_WORK:
        outer = next((d for d in range(rank) if shape[d] > 1), None)
        if outer is not None and (outer != rank - 1 or rank == 1):
            kinds[outer] = "parallel"
    return L.loop_nest(vars_, shape, body, kinds)


def elementwise_kernel(
    req: LowerRequest,
    scalar: Callable[[list[Expr]], Expr],
) -> Kernel:
    """out0[i] = scalar(in0[b0(i)], in1[b1(i)], ...) with numpy broadcasting.

    Inputs with the output's shape are read with the same flat index; when every input has the
    output's shape the nest collapses into one flat loop (the common, fastest case).
    """
    out_t = req.out_types[0]
    shape = out_t.shape
    if all(t.shape == shape for t in req.in_types):
        flat = (out_t.size,) if shape else ()

        def body(idx: list[Expr]) -> Stmt:
            i = idx[0] if idx else L.Const(0)
            loads = [L.Load(f"in{k}", i, t.dtype) for k, t in enumerate(req.in_types)]
            return L.Store("out0", i, scalar(loads))

        nest = parallel_nest(flat, body, req.schedule, 1)
    else:

        def body(idx: list[Expr]) -> Stmt:
            loads = [
                L.Load(f"in{k}", broadcast_index(idx, t.shape, len(shape)), t.dtype)
                for k, t in enumerate(req.in_types)
            ]
            return L.Store("out0", L.flat_index(idx, shape), scalar(loads))

        nest = parallel_nest(shape, body, req.schedule, 1)
    return Kernel(req.kernel_name, params_for(req), nest, (("op", req.node.op),))


def row_major_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a dense row-major buffer of `shape` (the last dim has stride 1)."""
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * int(shape[d + 1])
    return tuple(strides)


def unravel(flat: Expr, shape: Sequence[int]) -> list[Expr]:
    """Per-dim index of the row-major `flat` index into `shape` (a dim of size 1 gets the
    constant 0, the outermost dim no modulo). For epilogues and fused bodies that need a
    broadcast operand's index where only a flat index is at hand; unused entries cost nothing."""
    strides = row_major_strides(shape)
    out: list[Expr] = []
    for d, (extent, stride) in enumerate(zip(shape, strides)):
        if extent == 1:
            out.append(L.Const(0))
            continue
        e = L.div(flat, stride)
        out.append(e if d == 0 else L.mod(e, extent))
    return out


def pointwise_kernel(
    req: LowerRequest,
    shape: Sequence[int],
    body_fn: Callable[[Expr, list[Expr]], Stmt],
    *,
    flat: bool,
    inner_work: int = 1,
    info: tuple[tuple[str, int | str], ...] = (),
) -> Kernel:
    """One pass over the elements of `shape`, running `body_fn(flat index, per-dim index)` per
    element: `elementwise_kernel` generalized to bodies that load any inputs and store several
    outputs (a fused elementwise group). `flat=True` makes one flat loop (right when no operand
    needs a per-dim index: the fastest form); otherwise the loop nest runs over `shape`.
    `inner_work` (operations per element) decides whether the nest is worth a thread fork."""
    if flat:
        size = int(np.prod(shape)) if len(shape) else 1

        def flat_body(idx: list[Expr]) -> Stmt:
            i = idx[0] if idx else L.Const(0)
            return body_fn(i, unravel(i, shape))

        nest = parallel_nest((size,) if len(shape) else (), flat_body, req.schedule, inner_work)
    else:
        nest = parallel_nest(
            shape, lambda idx: body_fn(L.flat_index(idx, shape), idx), req.schedule, inner_work
        )
    return Kernel(req.kernel_name, params_for(req), nest, info or (("op", req.node.op),))
