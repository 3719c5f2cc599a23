"""Tensor ATen ops: views and reshapes, permutes, expand, concat / split, slicing, indexing,
padding, casts and copies.

Every view-like op (view, reshape, flatten, unflatten, squeeze, unsqueeze) becomes one IR
`reshape` to the shape torch recorded for the node, so -1 inference and dim lists need no code
here. Copies (clone, contiguous, alias, eval-mode dropout) are the input value itself: the IR is
functional, so there is nothing to copy.
"""

from __future__ import annotations

import math

import numpy as np

from modelc.frontend.fx_ops.node import FxNode
from modelc.frontend.fx_ops.registry import converter
from modelc.ir import dtypes as D


@converter(
    "aten.view.default",
    "aten._unsafe_view.default",
    "aten.reshape.default",
    "aten.view_copy.default",
    "aten.flatten.using_ints",
    "aten.unflatten.int",
    "aten.squeeze.default",
    "aten.squeeze.dim",
    "aten.squeeze.dims",
    "aten.unsqueeze.default",
)
def reshape(n: FxNode) -> str:
    return n.reshape(n.tensor("self"), n.out_shape)


@converter("aten.permute.default")
def permute(n: FxNode) -> str:
    x = n.tensor("self")
    rank = n.rank(x)
    return n.transpose(x, [n.axis(d, rank) for d in n.ints("dims")])


@converter("aten.transpose.int")
def transpose(n: FxNode) -> str:
    x = n.tensor("self")
    rank = n.rank(x)
    perm = list(range(rank))
    a, b = n.axis(n.arg("dim0"), rank), n.axis(n.arg("dim1"), rank)
    perm[a], perm[b] = perm[b], perm[a]
    return n.transpose(x, perm)


@converter("aten.t.default")
def t(n: FxNode) -> str:
    x = n.tensor("self")
    return n.transpose(x, [1, 0]) if n.rank(x) == 2 else x


@converter("aten.expand.default")
def expand(n: FxNode) -> str:
    x = n.tensor("self")
    shape = n.out_shape
    return x if n.shape(x) == shape else n.op("expand", x, shape=shape)


@converter("aten.repeat.default")
def repeat(n: FxNode) -> str:
    """tile; extra leading repeats first add leading dims of 1, as torch does."""
    x = n.tensor("self")
    repeats = n.ints("repeats")
    x = n.reshape(x, (1,) * (len(repeats) - n.rank(x)) + n.shape(x))
    return x if all(r == 1 for r in repeats) else n.op("tile", x, repeats=repeats)


# ---- copies, casts, no-ops -------------------------------------------------------------------


@converter(
    "aten.clone.default",
    "aten.contiguous.default",
    "aten.alias.default",
    "aten.detach.default",
    "aten.lift_fresh_copy.default",
)
def identity(n: FxNode) -> str:
    return n.tensor("self")


@converter("aten.dropout.default", "aten.feature_dropout.default", "aten.alpha_dropout.default")
def dropout(n: FxNode) -> str:
    """The identity in eval mode (the frontend traces modules in eval mode)."""
    if n.arg("train"):
        raise n.unsupported("dropout in training mode is random; call module.eval() first")
    return n.tensor("input")


@converter("aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout")
def to_copy(n: FxNode) -> str:
    """A dtype conversion (device and layout are irrelevant to the compiled model)."""
    return n.cast(n.tensor("self"), n.out_dtype)


@converter(
    "aten._assert_tensor_metadata.default",
    "aten._assert_async.msg",
    "aten._assert_scalar.default",
    "aten.sym_constrain_range_for_size.default",
)
def run_time_assert(n: FxNode) -> None:
    """torch's run-time checks: the static shapes already hold, nothing to compute."""
    return None


@converter(
    "aten.zeros_like.default",
    "aten.ones_like.default",
    "aten.full_like.default",
    "aten.empty_like.default",
    "aten.new_zeros.default",
    "aten.new_ones.default",
    "aten.new_full.default",
    "aten.new_empty.default",
)
def filled_like(n: FxNode) -> str:
    """A constant: only the shape of the input matters, and shapes are static."""
    name = n.target.split(".")[1]
    value = {"zeros_like": 0, "ones_like": 1, "new_zeros": 0, "new_ones": 1}.get(name)
    if value is None:
        value = n.arg("fill_value", 0)
    dt = n.out_dtype
    return n.constant(np.full(n.out_shape, value, dtype=dt.numpy), dt)


# ---- concat and split ------------------------------------------------------------------------


@converter("aten.cat.default")
def cat(n: FxNode) -> str:
    """concat in the promoted dtype; torch's legacy empty 1-D operands are skipped."""
    dt = n.out_dtype
    xs = [n.cast(x, dt) for x in n.tensors("tensors") if n.shape(x) != (0,)]
    rank = len(n.out_shape)
    if len(xs) == 1:
        return xs[0]
    return n.op("concat", *xs, axis=n.axis(n.arg("dim", 0), rank))


def _split(n: FxNode, x: str, sizes: list[int], axis: int) -> list[str]:
    outs, start = [], 0
    for size in sizes:
        outs.append(n.slice(x, axis, start, start + size))
        start += size
    return outs


@converter("aten.split.Tensor", "aten.split_with_sizes.default")
def split(n: FxNode) -> list[str]:
    x = n.tensor("self")
    axis = n.axis(n.arg("dim", 0), n.rank(x))
    dim = n.shape(x)[axis]
    if n.target.startswith("aten.split_with_sizes"):
        sizes = n.ints("split_sizes")
    else:
        step = int(n.arg("split_size"))
        sizes = [min(step, dim - s) for s in range(0, dim, step)] or [0]
    return _split(n, x, sizes, axis)


@converter("aten.chunk.default")
def chunk(n: FxNode) -> list[str]:
    x = n.tensor("self")
    axis = n.axis(n.arg("dim", 0), n.rank(x))
    dim = n.shape(x)[axis]
    step = math.ceil(dim / int(n.arg("chunks")))
    return _split(n, x, [min(step, dim - s) for s in range(0, dim, step)], axis)


@converter("aten.unbind.int")
def unbind(n: FxNode) -> list[str]:
    x = n.tensor("self")
    shape = n.shape(x)
    axis = n.axis(n.arg("dim", 0), len(shape))
    rest = shape[:axis] + shape[axis + 1 :]
    return [n.reshape(s, rest) for s in _split(n, x, [1] * shape[axis], axis)]


# ---- slicing and indexing --------------------------------------------------------------------


@converter("aten.slice.Tensor")
def slice_(n: FxNode) -> str:
    x = n.tensor("self")
    axis = n.axis(n.arg("dim", 0), n.rank(x))
    start, end = n.arg("start"), n.arg("end")
    return n.slice(x, axis, 0 if start is None else start, end, n.arg("step", 1))


@converter("aten.select.int")
def select(n: FxNode) -> str:
    """gather with a 0-d index (the dim disappears), as the ONNX exporters emit it."""
    x = n.tensor("self")
    axis = n.axis(n.arg("dim"), n.rank(x))
    index = int(n.arg("index"))
    dim = n.shape(x)[axis]
    if not -dim <= index < dim:
        raise n.shape_error(f"index {index} is out of range for dim {axis} of size {dim}")
    return n.op("gather", x, n.constant(np.asarray(index % dim, dtype=np.int64)), axis=axis)


@converter("aten.index_select.default")
def index_select(n: FxNode) -> str:
    x = n.tensor("self")
    return n.op("gather", x, n.tensor("index"), axis=n.axis(n.arg("dim"), n.rank(x)))


@converter("aten.flip.default")
def flip(n: FxNode) -> str:
    """A slice with step -1 on each flipped dim (end -1 means "through index 0" in the IR)."""
    x = n.tensor("self")
    shape = n.shape(x)
    dims = {n.axis(d, len(shape)) for d in n.ints("dims")}
    starts = [d - 1 if k in dims else 0 for k, d in enumerate(shape)]
    ends = [-1 if k in dims else d for k, d in enumerate(shape)]
    steps = [-1 if k in dims else 1 for k in range(len(shape))]
    return n.op("slice", x, starts=starts, ends=ends, steps=steps) if dims else x


@converter("aten.index.Tensor")
def index(n: FxNode) -> str:
    """`x[:, idx]`: one integer index tensor after leading full slices is a gather on that
    axis. Several index tensors (they broadcast together) and boolean masks (data-dependent
    shapes) are not supported."""
    x = n.tensor("self")
    indices = n.arg("indices") or []
    used = [k for k, i in enumerate(indices) if i is not None]
    if len(used) != 1:
        raise n.unsupported(
            f"indexing with {len(used)} index tensors is not supported (only x[..., idx] with "
            "one integer index tensor)"
        )
    (axis,) = used
    idx = indices[axis]
    if n.dtype(idx) == D.boolean:
        raise n.unsupported("boolean-mask indexing has a data-dependent shape")
    return n.op("gather", x, idx, axis=axis)


# ---- padding ---------------------------------------------------------------------------------


def _pads(n: FxNode, rank: int, name: str) -> list[int]:
    """torch's pad list (last dim first, begin / end pairs) as the IR's begins-then-ends."""
    pad = n.ints(name)
    if len(pad) % 2 or len(pad) // 2 > rank:
        raise n.shape_error(f"pad {pad} should be begin / end pairs for at most {rank} dims")
    begins, ends = [0] * rank, [0] * rank
    for k in range(len(pad) // 2):
        begins[rank - 1 - k], ends[rank - 1 - k] = pad[2 * k], pad[2 * k + 1]
    return begins + ends


@converter("aten.constant_pad_nd.default")
def constant_pad(n: FxNode) -> str:
    x = n.tensor("self")
    pads = _pads(n, n.rank(x), "pad")
    if not any(pads):
        return x
    return n.op("pad", x, pads=pads, mode="constant", value=float(n.arg("value", 0)))


@converter(
    "aten.reflection_pad1d.default",
    "aten.reflection_pad2d.default",
    "aten.reflection_pad3d.default",
    "aten.replication_pad1d.default",
    "aten.replication_pad2d.default",
    "aten.replication_pad3d.default",
)
def mode_pad(n: FxNode) -> str:
    x = n.tensor("self")
    mode = "reflect" if n.target.startswith("aten.reflection") else "edge"
    pads = _pads(n, n.rank(x), "padding")
    return n.op("pad", x, pads=pads, mode=mode) if any(pads) else x
