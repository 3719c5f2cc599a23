"""Shape-changing ONNX ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Expand, Tile,
DepthToSpace, SpaceToDepth.

Everything here resolves to a static target shape at import: `reshape` (a view in the IR),
`transpose`, `expand` or `tile`, with attributes the IR takes verbatim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.frontend.onnx_ops.common import axes as norm_axes
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter


def resolve_reshape(
    n: OnnxNode, in_shape: Sequence[int], target: Sequence[int], allowzero: bool
) -> list[int]:
    """ONNX Reshape's shape rules: 0 copies the input dim (unless allowzero), -1 is inferred."""
    dims = list(target)
    for i, d in enumerate(dims):
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                raise n.shape_error(f"shape {list(target)}: 0 at dim {i} has no input dim to copy")
            dims[i] = in_shape[i]
        elif d < -1:
            raise n.shape_error(f"shape {list(target)} has a negative dim other than -1")
    total = math.prod(in_shape)
    unknown = [i for i, d in enumerate(dims) if d == -1]
    if len(unknown) > 1:
        raise n.shape_error(f"shape {list(target)} has more than one -1")
    known = math.prod(d for d in dims if d != -1)
    if unknown:
        if known == 0 or total % known:
            raise n.shape_error(f"cannot reshape {tuple(in_shape)} to {list(target)}")
        dims[unknown[0]] = total // known
    if math.prod(dims) != total:
        raise n.shape_error(f"cannot reshape {tuple(in_shape)} ({total} elements) to {dims}")
    return dims


@converter("Reshape", since=5)
def reshape(n: OnnxNode) -> list[str]:
    """The shape input must be constant (it is, after folding, in static-shape graphs);
    Reshape-14 added allowzero."""
    target = n.ints_input(1, "shape")
    if target is None:
        raise n.unsupported("input 1 (shape) is required")
    dims = resolve_reshape(n, n.shape(0), target, bool(n.attr("allowzero", 0)))
    return [n.reshape(n.input(0), dims)]


@converter("Flatten", since=1)
def flatten(n: OnnxNode) -> list[str]:
    """To 2-D: (prod(dims before axis), prod(dims from axis)); axis may equal the rank."""
    shape = n.shape(0)
    rank = len(shape)
    ax = n.attr("axis", 1)
    if not -rank <= ax <= rank:
        raise n.shape_error(f"axis {ax} is out of range for rank {rank}")
    ax = ax + rank if ax < 0 else ax
    return [n.reshape(n.input(0), (math.prod(shape[:ax]), math.prod(shape[ax:])))]


def _squeeze(n: OnnxNode, axes: list[int] | None) -> list[str]:
    shape = n.shape(0)
    if axes is None:
        drop = {i for i, d in enumerate(shape) if d == 1}
    else:
        drop = set(norm_axes(n, axes, len(shape)))
        bad = [i for i in sorted(drop) if shape[i] != 1]
        if bad:
            raise n.shape_error(f"cannot squeeze axes {bad} of shape {shape}: their size is not 1")
    return [n.reshape(n.input(0), [d for i, d in enumerate(shape) if i not in drop])]


@converter("Squeeze", since=1)
def squeeze_1(n: OnnxNode) -> list[str]:
    """axes is an optional attribute (default: every axis of size 1)."""
    return _squeeze(n, n.ints_attr("axes"))


@converter("Squeeze", since=13)
def squeeze_13(n: OnnxNode) -> list[str]:
    """axes is an optional input."""
    return _squeeze(n, n.ints_input(1, "axes"))


def _unsqueeze(n: OnnxNode, axes: list[int] | None) -> list[str]:
    if axes is None:
        raise n.unsupported("axes is required")
    shape = n.shape(0)
    out_rank = len(shape) + len(axes)
    inserted = set(norm_axes(n, axes, out_rank))
    rest = iter(shape)
    return [n.reshape(n.input(0), [1 if i in inserted else next(rest) for i in range(out_rank)])]


@converter("Unsqueeze", since=1)
def unsqueeze_1(n: OnnxNode) -> list[str]:
    """axes is a required attribute; negative values (from Unsqueeze-11) count from the end of
    the output."""
    return _unsqueeze(n, n.ints_attr("axes"))


@converter("Unsqueeze", since=13)
def unsqueeze_13(n: OnnxNode) -> list[str]:
    return _unsqueeze(n, n.ints_input(1, "axes"))


@converter("Transpose", since=1)
def transpose(n: OnnxNode) -> list[str]:
    """perm defaults to reversing the axes."""
    rank = n.rank(0)
    perm = n.ints_attr("perm", list(reversed(range(rank))))
    assert perm is not None
    if sorted(perm) != list(range(rank)):
        raise n.shape_error(f"perm {perm} is not a permutation of the {rank} axes")
    return [n.transpose(n.input(0), perm)]


@converter("Expand", since=8)
def expand(n: OnnxNode) -> list[str]:
    """ONNX Expand broadcasts both ways (the shape may hold 1s where x is larger), so the
    output shape is numpy's broadcast of the two."""
    target = n.ints_input(1, "shape")
    if target is None:
        raise n.unsupported("input 1 (shape) is required")
    try:
        out = tuple(int(d) for d in np.broadcast_shapes(n.shape(0), tuple(target)))
    except ValueError:
        raise n.shape_error(f"shape {target} does not broadcast with X {n.shape(0)}") from None
    if out == n.shape(0):
        return [n.input(0)]
    return [n.op("expand", n.input(0), shape=out)]


@converter("Tile", since=6)
def tile(n: OnnxNode) -> list[str]:
    repeats = n.ints_input(1, "repeats")
    if repeats is None or len(repeats) != n.rank(0) or any(r < 0 for r in repeats):
        raise n.shape_error(f"repeats {repeats} should be {n.rank(0)} non-negative counts")
    if all(r == 1 for r in repeats):
        return [n.input(0)]
    return [n.op("tile", n.input(0), repeats=repeats)]


# ---- depth <-> space ------------------------------------------------------------------------


def _blocksize(n: OnnxNode) -> int:
    size = n.attr("blocksize")
    if not isinstance(size, int) or size < 1:
        raise n.unsupported("the attribute 'blocksize' must be a positive int")
    return size


@converter("DepthToSpace", since=1)
def depth_to_space(n: OnnxNode) -> list[str]:
    """DepthToSpace-11 added mode CRD next to the default DCR."""
    mode = n.attr("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise n.unsupported(f"mode {mode!r} is not DCR or CRD")
    return [n.op("depth_to_space", n.input(0), blocksize=_blocksize(n), mode=mode)]


@converter("SpaceToDepth", since=1)
def space_to_depth(n: OnnxNode) -> list[str]:
    """SpaceToDepth-28 added mode CRD, which the IR op lacks: reshape -> transpose -> reshape,
    as the ONNX reference computes it."""
    size = _blocksize(n)
    mode = n.attr("mode", "DCR")
    if mode == "DCR":
        return [n.op("space_to_depth", n.input(0), blocksize=size)]
    if mode != "CRD":
        raise n.unsupported(f"mode {mode!r} is not DCR or CRD")
    shape = n.shape(0)
    if len(shape) != 4 or shape[2] % size or shape[3] % size:
        raise n.shape_error(f"X {shape} is not (N, C, H, W) with H, W multiples of {size}")
    b, c, h, w = shape
    blocks = n.reshape(n.input(0), (b, c, h // size, size, w // size, size))
    moved = n.transpose(blocks, (0, 1, 3, 5, 2, 4))
    return [n.reshape(moved, (b, c * size * size, h // size, w // size))]
