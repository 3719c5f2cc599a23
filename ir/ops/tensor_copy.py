"""Building blocks shared by the tensor (data-movement) ops: affine copies and quant carry-over.

Most data-movement ops are one *affine copy*: walk an iteration space and copy
`src[src_base + sum(o_i * src_coeffs_i)]` to `dst[dst_base + sum(o_i * dst_coeffs_i)]`.
Reshape, transpose, slice, expand, tile, depth_to_space and space_to_depth are all that with
different coefficients, and concat and pad are a few of them side by side. Writing them once
means one place simplifies the nest (unit dims dropped, contiguous dims merged, so an NCHW ->
NHWC transpose becomes a 3-d nest and a reshape one flat loop) and one place tiles transposes
for the cache.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelc.errors import ShapeError
from modelc.ir import loop as L
from modelc.ir.dtypes import DType
from modelc.ir.loop import Expr, Kernel, Schedule, Stmt, Var
from modelc.ir.opdef import LowerRequest
from modelc.ir.ops.common import PARALLEL_MIN_WORK, parallel_nest, params_for, row_major_strides
from modelc.ir.types import TensorType

# Square tile (elements per side) of a transpose whose input-contiguous dim is not the output's
# innermost one: 16x16 keeps both the read and the write side of a tile within L1 for any dtype.
TRANSPOSE_TILE = 16


@dataclass(frozen=True)
class AffineCopy:
    """`dst[dst_base + sum(o_i * dst_coeffs_i)] = src[src_base + sum(o_i * src_coeffs_i)]` for every
    `o` in the box `lens` (flat element offsets, row-major buffers)."""

    lens: tuple[int, ...]
    src_coeffs: tuple[int, ...]
    dst_coeffs: tuple[int, ...]
    src_base: int = 0
    dst_base: int = 0

    @staticmethod
    def into_dense(lens: Sequence[int], src_coeffs: Sequence[int], src_base: int = 0) -> AffineCopy:
        """A copy that fills a row-major destination of shape `lens` in order."""
        lens = tuple(int(n) for n in lens)
        return AffineCopy(lens, tuple(src_coeffs), row_major_strides(lens), src_base, 0)

    @property
    def size(self) -> int:
        return math.prod(self.lens)

    def simplified(self) -> AffineCopy:
        """Drop unit dims and merge neighbours that step through both buffers as one dim.

        Dims `a` (outer) and `b` (inner) merge when `coeff_a == len_b * coeff_b` on both sides:
        then `o_a * coeff_a + o_b * coeff_b == (o_a * len_b + o_b) * coeff_b`.
        """
        if self.size == 0:
            return self
        dims = [(n, s, d) for n, s, d in zip(self.lens, self.src_coeffs, self.dst_coeffs) if n != 1]
        merged: list[tuple[int, int, int]] = []
        for n, s, d in dims:
            if merged:
                pn, ps, pd = merged[-1]
                if ps == n * s and pd == n * d:
                    merged[-1] = (pn * n, s, d)
                    continue
            merged.append((n, s, d))
        return AffineCopy(
            tuple(m[0] for m in merged),
            tuple(m[1] for m in merged),
            tuple(m[2] for m in merged),
            self.src_base,
            self.dst_base,
        )


def affine_index(idx: Sequence[Expr], coeffs: Sequence[int], base: int = 0) -> Expr:
    """`base + sum(idx_i * coeffs_i)` built with the folding constructors."""
    out: Expr = L.Const(int(base))
    for i, c in zip(idx, coeffs):
        if c != 0:
            out = L.add(out, L.mul(i, int(c)))
    return out


def copy_stmt(
    copy: AffineCopy,
    dtype: DType,
    schedule: Schedule,
    *,
    src: str = "in0",
    dst: str = "out0",
) -> Stmt:
    """The loop nest of one affine copy (an empty `Seq` when there is nothing to copy).

    When the source's contiguous dim is not the innermost loop (a real transpose), the nest is
    tiled over that dim and the innermost one, so reads and writes both stay in cache. The tile
    is `schedule.tile[0]` when the schedule sets one (0 disables tiling), else `TRANSPOSE_TILE`.
    """
    c = copy.simplified()
    if c.size == 0:
        return L.Seq(())

    def body(idx: Sequence[Expr]) -> Stmt:
        value = L.Load(src, affine_index(idx, c.src_coeffs, c.src_base), dtype)
        return L.Store(dst, affine_index(idx, c.dst_coeffs, c.dst_base), value)

    t = schedule.tile[0] if schedule.tile else TRANSPOSE_TILE
    rank = len(c.lens)
    q = next((d for d in range(rank - 1) if c.src_coeffs[d] == 1), None)
    if t > 0 and q is not None and abs(c.src_coeffs[-1]) > 1 and min(c.lens[q], c.lens[-1]) > t:
        return _tiled_nest(c.lens, q, t, body, schedule)
    return parallel_nest(c.lens, body, schedule, 1)


def fill_stmt(
    lens: Sequence[int],
    dst_coeffs: Sequence[int],
    dst_base: int,
    value: Expr,
    schedule: Schedule,
    *,
    dst: str = "out0",
) -> Stmt:
    """`dst[dst_base + sum(o_i * dst_coeffs_i)] = value` over the box `lens`, simplified like a
    copy (an empty `Seq` for an empty box)."""
    box = AffineCopy(tuple(lens), (0,) * len(lens), tuple(dst_coeffs), 0, dst_base).simplified()
    if box.size == 0:
        return L.Seq(())
    return parallel_nest(
        box.lens,
        lambda idx: L.Store(dst, affine_index(idx, box.dst_coeffs, box.dst_base), value),
        schedule,
        1,
    )


def _tiled_nest(
    lens: Sequence[int],
    q: int,
    t: int,
    body: Callable[[Sequence[Expr]], Stmt],
    schedule: Schedule,
) -> Stmt:
    """Loops over `lens` with dims `q` and the last one split into `t`-sized tiles:
    `for .. for tile_q .. for tile_last: for i_q in tile: for i_last in tile: body`."""
    rank = len(lens)
    last = rank - 1
    idx = [Var(f"i{d}") for d in range(rank)]
    tiles = {q: Var(f"t{q}"), last: Var(f"t{last}")}
    # (var, start, extent) from the outermost loop in.
    loops: list[tuple[Var, Expr, Expr]] = []
    for d in range(last):
        if d == q:
            loops.append((tiles[q], L.Const(0), L.Const(-(-lens[q] // t))))
        else:
            loops.append((idx[d], L.Const(0), L.Const(lens[d])))
    loops.append((tiles[last], L.Const(0), L.Const(-(-lens[last] // t))))
    for d in (q, last):
        start = L.mul(tiles[d], t)
        extent = L.Const(t) if lens[d] % t == 0 else L.minimum(t, L.sub(lens[d], start))
        loops.append((idx[d], start, extent))
    # Simplified copies have no unit dims and tiled dims exceed one tile, so every loop
    # iterates more than once: the outermost is the one to parallelize.
    kinds = ["serial"] * len(loops)
    if schedule.vectorize:
        kinds[-1] = "vectorized"
    if schedule.parallel and math.prod(lens) >= PARALLEL_MIN_WORK:
        kinds[0] = "parallel"
    stmt = body(idx)
    for (v, start, extent), kind in reversed(list(zip(loops, kinds))):
        stmt = L.For(v, start, extent, stmt, kind)
    return stmt


def copy_kernel(req: LowerRequest, copy: AffineCopy) -> Kernel:
    """A kernel that is one affine copy from `in0` to `out0`."""
    body = copy_stmt(copy, req.out_types[0].dtype, req.schedule)
    return Kernel(req.kernel_name, params_for(req), body, (("op", req.node.op),))


def transpose_copy(shape: Sequence[int], perm: Sequence[int]) -> AffineCopy:
    """Copy of `x.transpose(perm)` (x of `shape`) into a dense output."""
    strides = row_major_strides(shape)
    return AffineCopy.into_dense([shape[p] for p in perm], [strides[p] for p in perm])


# ---- types -------------------------------------------------------------------------------------


def result_type(
    op: str,
    t: TensorType,
    shape: Sequence[int],
    quant_axis: Callable[[int], int | None] | None = None,
) -> TensorType:
    """The output type of a data-movement op on `t`: same dtype, new shape, and the operand's
    quantization carried over (moving stored integers does not change what they mean).

    A per-channel scale only survives if the channel axis does: `quant_axis` maps the operand's
    channel axis to the output's, or returns None when the op mixes, drops or reorders channels
    (then the scales would no longer line up, which is an error rather than a silent change).
    Storage encodings (N:M, binary-coded) describe constants as stored; a moved tensor is dense.
    """
    q = t.quant
    if q is not None and q.axis is not None:
        new_axis = quant_axis(q.axis) if quant_axis is not None else None
        if new_axis is None:
            raise ShapeError(
                f"{op}: the operand is quantized per channel along axis {q.axis}, which {op} does "
                "not keep intact; dequantize it first or quantize it per tensor"
            )
        q = dataclasses.replace(q, axis=new_axis)
    return TensorType(tuple(int(d) for d in shape), t.dtype, q)


def ints(value: object, what: str) -> tuple[int, ...]:
    """An ints attribute as a tuple (a single int is accepted as a one-element list)."""
    if isinstance(value, (int, bool)):
        return (int(value),)
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ShapeError(f"{what} must be a list of ints, got {value!r}")
    return tuple(int(v) for v in value)
