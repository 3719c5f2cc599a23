"""Tensor (data-movement) ops that read their input through a strided view: reshape, transpose,
slice, expand, tile, depth_to_space and space_to_depth.

Each output element is one input element at an affine offset, so each op is a shape rule, a
numpy reference (which defines the semantics, matching ONNX / onnxruntime) and the coefficients
of one `AffineCopy`; `tensor_copy` turns those into a simplified, tiled loop nest. The rest of
the family lives next door: `tensor_concat`, `tensor_pad`, `tensor_gather`.

These ops only move bytes, so they work for every dtype (shape subgraphs carry i64, masks bool)
and their lowerings are bit-exact with the reference. Attributes arrive normalized by the
frontend (docs/op_catalog.md): non-negative axes, one entry per dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from modelc.errors import ShapeError, UnsupportedOpError
from modelc.ir.attrs import Attrs
from modelc.ir.loop import Kernel
from modelc.ir.opdef import INJECTIVE, VIEW, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import broadcast_shapes, row_major_strides
from modelc.ir.ops.tensor_copy import (
    AffineCopy,
    copy_kernel,
    ints,
    result_type,
    transpose_copy,
)
from modelc.ir.types import TensorType

Types = Sequence[TensorType | None]
Arrays = Sequence[np.ndarray | None]


def _one(types: Types) -> TensorType:
    t = types[0]
    assert t is not None
    return t


def _arr(xs: Arrays) -> np.ndarray:
    x = xs[0]
    assert x is not None
    return x


def _dense(y: np.ndarray) -> np.ndarray:
    """A row-major copy of a strided view (np.ascontiguousarray would turn 0-d into 1-d)."""
    return np.asarray(y, order="C")


# ---- reshape -----------------------------------------------------------------------------------


def _infer_reshape(types: Types, attrs: Attrs) -> list[TensorType]:
    t = _one(types)
    shape = ints(attrs["shape"], "reshape: shape")
    if any(d < 0 for d in shape):
        raise ShapeError(
            f"reshape: target shape {shape} has a negative dim; the frontend must resolve "
            "-1 and 0 into concrete sizes"
        )
    if math.prod(shape) != t.size:
        raise ShapeError(
            f"reshape: cannot reshape {t.shape} ({t.size} elements) to {shape} "
            f"({math.prod(shape)} elements)"
        )

    def quant_axis(a: int) -> int | None:
        # The channel axis survives if some output dim has its extent and the same outer volume.
        outer = math.prod(t.shape[:a])
        for b in range(len(shape)):
            if math.prod(shape[:b]) == outer and shape[b] == t.shape[a]:
                return b
        return None

    return [result_type("reshape", t, shape, quant_axis)]


def _lower_flat(req: LowerRequest) -> Kernel:
    n = req.out_types[0].size
    return copy_kernel(req, AffineCopy.into_dense((n,), (1,)))


register_op(
    OpDef(
        name="reshape",
        infer=_infer_reshape,
        reference=lambda xs, a: [np.reshape(_arr(xs), ints(a["shape"], "shape"))],
        attrs={"shape": AttrSpec("ints", doc="fully resolved target shape (no 0 / -1)")},
        traits=frozenset({VIEW, INJECTIVE}),
        lower=_lower_flat,
        doc="Same elements in the same row-major order, new shape. A VIEW: the program builder "
        "aliases the input's buffer; the lowering (a flat copy) is for where it cannot.",
    )
)


# ---- transpose ---------------------------------------------------------------------------------


def _perm(t: TensorType, attrs: Attrs) -> tuple[int, ...]:
    perm = ints(attrs["perm"], "transpose: perm")
    if sorted(perm) != list(range(t.rank)):
        raise ShapeError(f"transpose: perm {perm} is not a permutation of the {t.rank} axes")
    return perm


def _infer_transpose(types: Types, attrs: Attrs) -> list[TensorType]:
    t = _one(types)
    perm = _perm(t, attrs)
    shape = [t.shape[p] for p in perm]
    return [result_type("transpose", t, shape, lambda a: perm.index(a))]


register_op(
    OpDef(
        name="transpose",
        infer=_infer_transpose,
        reference=lambda xs, a: [_dense(np.transpose(_arr(xs), ints(a["perm"], "perm")))],
        attrs={"perm": AttrSpec("ints", doc="output dim i is input dim perm[i]")},
        traits=frozenset({INJECTIVE}),
        lower=lambda req: copy_kernel(
            req, transpose_copy(req.in_types[0].shape, _perm(req.in_types[0], req.node.attrs))
        ),
        doc="out[i0..ik] = x[j] with j[perm[d]] = i[d]; loops in output order, tiled when the "
        "input's contiguous dim is not the output's last.",
    )
)


# ---- slice -------------------------------------------------------------------------------------


def _slice_dims(shape: Sequence[int], attrs: Attrs) -> list[tuple[int, int, int]]:
    """(start, step, length) per dim, after checking the normal form (see the op's doc)."""
    starts = ints(attrs["starts"], "slice: starts")
    ends = ints(attrs["ends"], "slice: ends")
    steps = ints(attrs["steps"], "slice: steps")
    if not len(starts) == len(ends) == len(steps) == len(shape):
        raise ShapeError(
            f"slice: starts/ends/steps have {len(starts)}/{len(ends)}/{len(steps)} entries; "
            f"the frontend must give one per dim of the rank-{len(shape)} input {tuple(shape)}"
        )
    dims = []
    for d, (n, s, e, st) in enumerate(zip(shape, starts, ends, steps)):
        if st == 0:
            raise ShapeError(f"slice: step of dim {d} is 0")
        lo, hi = (0, n) if st > 0 else (-1, n - 1)
        if not (lo <= s <= hi and lo <= e <= hi):
            raise ShapeError(
                f"slice: dim {d} (size {n}) has start {s}, end {e}, step {st}, which is not "
                f"clamped: for a {'positive' if st > 0 else 'negative'} step both must lie in "
                f"[{lo}, {hi}]"
            )
        dims.append((s, st, max(0, -(-(e - s) // st))))
    return dims


def _infer_slice(types: Types, attrs: Attrs) -> list[TensorType]:
    t = _one(types)
    dims = _slice_dims(t.shape, attrs)

    def quant_axis(a: int) -> int | None:
        s, st, n = dims[a]
        return a if (s, st, n) == (0, 1, t.shape[a]) else None

    return [result_type("slice", t, [n for _, _, n in dims], quant_axis)]


def _slice_ref(xs: Arrays, attrs: Attrs) -> list[np.ndarray]:
    x = _arr(xs)
    index = []
    for s, st, n in _slice_dims(x.shape, attrs):
        stop = s + n * st
        index.append(slice(0, 0) if n == 0 else slice(s, None if stop < 0 else stop, st))
    return [_dense(x[tuple(index)])]


def _lower_slice(req: LowerRequest) -> Kernel:
    t = req.in_types[0]
    dims = _slice_dims(t.shape, req.node.attrs)
    strides = row_major_strides(t.shape)
    base = sum(s * k for (s, _, _), k in zip(dims, strides))
    copy = AffineCopy.into_dense(
        [n for _, _, n in dims], [st * k for (_, st, _), k in zip(dims, strides)], base
    )
    return copy_kernel(req, copy)


register_op(
    OpDef(
        name="slice",
        infer=_infer_slice,
        reference=_slice_ref,
        attrs={
            "starts": AttrSpec("ints", doc="first index per dim"),
            "ends": AttrSpec("ints", doc="exclusive end per dim; -1 = before index 0 (step < 0)"),
            "steps": AttrSpec("ints", doc="non-zero step per dim"),
        },
        traits=frozenset({INJECTIVE}),
        lower=_lower_slice,
        doc="Strided slice, one (start, end, step) per dim, in ONNX's clamped form: for step > 0 "
        "start and end lie in [0, dim]; for step < 0 in [-1, dim - 1], where end = -1 means "
        "'through index 0' (not python's 'last element'). Output length per dim is "
        "max(0, ceil((end - start) / step)).",
    )
)


# ---- expand ------------------------------------------------------------------------------------


def _infer_expand(types: Types, attrs: Attrs) -> list[TensorType]:
    t = _one(types)
    shape = ints(attrs["shape"], "expand: shape")
    if any(d < 0 for d in shape):
        raise ShapeError(f"expand: shape {shape} has a negative dim")
    out = broadcast_shapes(t.shape, shape)
    offset = len(out) - t.rank

    def quant_axis(a: int) -> int | None:
        # Broadcasting a one-channel axis would stretch one scale over many channels.
        return a + offset if out[a + offset] == t.shape[a] else None

    return [result_type("expand", t, out, quant_axis)]


def _lower_expand(req: LowerRequest) -> Kernel:
    t, out = req.in_types[0], req.out_types[0].shape
    offset = len(out) - t.rank
    strides = (0,) * offset + tuple(
        0 if n == 1 else k for n, k in zip(t.shape, row_major_strides(t.shape))
    )
    return copy_kernel(req, AffineCopy.into_dense(out, strides))


register_op(
    OpDef(
        name="expand",
        infer=_infer_expand,
        reference=lambda xs, a: [
            _dense(
                np.broadcast_to(
                    _arr(xs), broadcast_shapes(_arr(xs).shape, ints(a["shape"], "shape"))
                )
            )
        ],
        attrs={"shape": AttrSpec("ints", doc="broadcast against x's shape (both ways)")},
        traits=frozenset({INJECTIVE}),
        lower=_lower_expand,
        doc="ONNX Expand: numpy broadcast_to(x, broadcast_shapes(x.shape, shape)); a 1 in "
        "`shape` keeps x's dim, and `shape` may have a lower rank than x.",
    )
)


# ---- tile --------------------------------------------------------------------------------------


def _repeats(t: TensorType, attrs: Attrs) -> tuple[int, ...]:
    reps = ints(attrs["repeats"], "tile: repeats")
    if len(reps) != t.rank or any(r < 0 for r in reps):
        raise ShapeError(
            f"tile: repeats {reps} must hold one non-negative count per dim of {t.shape}"
        )
    return reps


def _infer_tile(types: Types, attrs: Attrs) -> list[TensorType]:
    t = _one(types)
    reps = _repeats(t, attrs)
    shape = [n * r for n, r in zip(t.shape, reps)]
    return [result_type("tile", t, shape, lambda a: a if reps[a] == 1 else None)]


def _lower_tile(req: LowerRequest) -> Kernel:
    # Output dim d of extent r*n is the pair (repeat, index) of extents (r, n): the nest walks the
    # interleaved shape (r0, n0, r1, n1, ...) and the repeat dims read with coefficient 0, so
    # no modulo is needed.
    t = req.in_types[0]
    reps = _repeats(t, req.node.attrs)
    lens, coeffs = [], []
    for r, n, k in zip(reps, t.shape, row_major_strides(t.shape)):
        lens += [r, n]
        coeffs += [0, k]
    return copy_kernel(req, AffineCopy.into_dense(lens, coeffs))


register_op(
    OpDef(
        name="tile",
        infer=_infer_tile,
        reference=lambda xs, a: [np.tile(_arr(xs), ints(a["repeats"], "repeats"))],
        attrs={"repeats": AttrSpec("ints", doc="copies per dim (one per dim, >= 0)")},
        traits=frozenset({INJECTIVE}),
        lower=_lower_tile,
        doc="numpy.tile / ONNX Tile with one repeat count per dim.",
    )
)


# ---- depth_to_space / space_to_depth -----------------------------------------------------------


Shape = tuple[int, ...]
ViewFn = Callable[[Shape, Attrs], tuple[Shape, Shape]]


def _nchw(op: str, shape: Shape, attrs: Attrs) -> tuple[int, int, int, int, int]:
    if len(shape) != 4:
        raise ShapeError(f"{op}: input must be 4-d NCHW, got shape {shape}")
    b = attrs["blocksize"]
    if not isinstance(b, int) or b < 1:
        raise ShapeError(f"{op}: blocksize must be a positive int, got {b!r}")
    n, c, h, w = shape
    return n, c, h, w, b


def _d2s_view(shape: Shape, attrs: Attrs) -> tuple[Shape, Shape]:
    """depth_to_space as (6-d view of the input, transpose perm), as the ONNX spec defines it."""
    n, c, h, w, b = _nchw("depth_to_space", shape, attrs)
    if c % (b * b):
        raise ShapeError(
            f"depth_to_space: channels {c} of {shape} are not divisible by blocksize^2 = {b * b}"
        )
    mode = attrs["mode"]
    if mode == "DCR":
        return (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
    if mode == "CRD":
        return (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)
    raise UnsupportedOpError(f"depth_to_space: mode {mode!r} is not one of 'DCR', 'CRD'")


def _s2d_view(shape: Shape, attrs: Attrs) -> tuple[Shape, Shape]:
    """space_to_depth as (6-d view of the input, transpose perm), as the ONNX spec defines it."""
    n, c, h, w, b = _nchw("space_to_depth", shape, attrs)
    if h % b or w % b:
        raise ShapeError(
            f"space_to_depth: spatial dims {h}x{w} of {shape} are not divisible by blocksize {b}"
        )
    return (n, c, h // b, b, w // b, b), (0, 3, 5, 1, 2, 4)


def _block_op(
    name: str,
    view_fn: ViewFn,
    groups: tuple[tuple[int, ...], ...],
    attrs: dict[str, AttrSpec],
    doc: str,
) -> None:
    """Register an op that is reshape -> transpose -> reshape of its input: `view_fn` gives the
    6-d view and the perm, `groups` which transposed dims merge into each of the 4 output dims."""

    def out_shape(shape: Shape, a: Attrs) -> Shape:
        view, perm = view_fn(shape, a)
        moved = [view[p] for p in perm]
        return tuple(math.prod(moved[i] for i in g) for g in groups)

    def infer(types: Types, a: Attrs) -> list[TensorType]:
        t = _one(types)
        # Only the batch axis keeps its meaning; channels are interleaved with space.
        return [result_type(name, t, out_shape(t.shape, a), lambda ax: 0 if ax == 0 else None)]

    def reference(xs: Arrays, a: Attrs) -> list[np.ndarray]:
        x = _arr(xs)
        view, perm = view_fn(x.shape, a)
        y = _dense(np.transpose(x.reshape(view), perm))
        return [y.reshape(out_shape(x.shape, a))]

    def lower(req: LowerRequest) -> Kernel:
        view, perm = view_fn(req.in_types[0].shape, req.node.attrs)
        return copy_kernel(req, transpose_copy(view, perm))

    register_op(
        OpDef(
            name=name,
            infer=infer,
            reference=reference,
            attrs=attrs,
            traits=frozenset({INJECTIVE}),
            lower=lower,
            doc=doc,
        )
    )


_block_op(
    "depth_to_space",
    _d2s_view,
    ((0,), (1,), (2, 3), (4, 5)),
    {
        "blocksize": AttrSpec("int"),
        "mode": AttrSpec("str", "DCR", doc="'DCR' (depth-column-row) or 'CRD'"),
    },
    "ONNX DepthToSpace on NCHW: [N, C, H, W] -> [N, C/b^2, H*b, W*b].",
)
_block_op(
    "space_to_depth",
    _s2d_view,
    ((0,), (1, 2, 3), (4,), (5,)),
    {"blocksize": AttrSpec("int")},
    "ONNX SpaceToDepth on NCHW: [N, C, H, W] -> [N, C*b^2, H/b, W/b].",
)
