"""Indexing ONNX ops: Slice, Split, Concat, Pad, Gather.

Slice and Split become the IR's full-rank `slice` (one start/end/step per dim, clamped here as
the ONNX spec says), so the IR never sees negative or out-of-range indices, partial axes lists or
INT64_MAX sentinels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.frontend.onnx_ops.common import axis as norm_axis
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter


def _slice(
    n: OnnxNode,
    x: str,
    starts: Sequence[int],
    ends: Sequence[int],
    axes: Sequence[int] | None,
    steps: Sequence[int] | None,
) -> str:
    """ONNX Slice on `x` as a full-rank `slice`; no node when it selects everything."""
    shape = n.b.types[x].shape
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else list(steps)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise n.shape_error(
            f"starts {list(starts)}, ends {list(ends)}, axes {axes} and steps {steps} differ "
            "in length"
        )
    full_starts, full_ends, full_steps = [0] * rank, list(shape), [1] * rank
    seen: set[int] = set()
    for start, end, ax, step in zip(starts, ends, axes, steps):
        ax = norm_axis(n, ax, rank, "axes entry")
        if ax in seen:
            raise n.shape_error(f"axes {axes} name axis {ax} twice")
        seen.add(ax)
        if step == 0:
            raise n.shape_error("steps must not be 0")
        dim = shape[ax]
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        else:
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        full_starts[ax], full_ends[ax], full_steps[ax] = start, end, step
    if full_starts == [0] * rank and full_ends == list(shape) and full_steps == [1] * rank:
        return x
    return n.op("slice", x, starts=full_starts, ends=full_ends, steps=full_steps)


@converter("Slice", since=1)
def slice_1(n: OnnxNode) -> list[str]:
    """starts / ends / axes are attributes; no steps."""
    starts, ends = n.ints_attr("starts"), n.ints_attr("ends")
    if starts is None or ends is None:
        raise n.unsupported("the attributes 'starts' and 'ends' are required")
    return [_slice(n, n.input(0), starts, ends, n.ints_attr("axes"), None)]


@converter("Slice", since=10)
def slice_10(n: OnnxNode) -> list[str]:
    """starts / ends / axes / steps are inputs, which must be constant."""
    starts, ends = n.ints_input(1, "starts"), n.ints_input(2, "ends")
    if starts is None or ends is None:
        raise n.unsupported("inputs 1 (starts) and 2 (ends) are required")
    axes, steps = n.ints_input(3, "axes"), n.ints_input(4, "steps")
    return [_slice(n, n.input(0), starts, ends, axes, steps)]


# ---- Split -----------------------------------------------------------------------------------


def _split(n: OnnxNode, sizes: list[int] | None, num_outputs: int | None = None) -> list[str]:
    x, shape = n.input(0), n.shape(0)
    ax = norm_axis(n, n.attr("axis", 0), len(shape))
    dim, count = shape[ax], n.num_outputs
    if sizes is None:
        if num_outputs is not None:  # Split-18: the last chunk may be smaller
            chunk = math.ceil(dim / num_outputs)
            sizes = [chunk] * (num_outputs - 1) + [dim - chunk * (num_outputs - 1)]
        elif dim % count == 0:
            sizes = [dim // count] * count
        else:
            raise n.shape_error(f"axis {ax} of size {dim} does not split into {count} equal parts")
    if len(sizes) != count or sum(sizes) != dim or any(s < 0 for s in sizes):
        raise n.shape_error(f"split sizes {sizes} do not divide axis {ax} of size {dim} in {count}")
    outs, start = [], 0
    for k, size in enumerate(sizes):
        outs.append(_slice(n, x, [start], [start + size], [ax], None) if n.proto.output[k] else "")
        start += size
    return outs


@converter("Split", since=2)
def split_2(n: OnnxNode) -> list[str]:
    """split sizes are an optional attribute (default: equal parts)."""
    return _split(n, n.ints_attr("split"))


@converter("Split", since=13)
def split_13(n: OnnxNode) -> list[str]:
    """split sizes are an optional input."""
    return _split(n, n.ints_input(1, "split"))


@converter("Split", since=18)
def split_18(n: OnnxNode) -> list[str]:
    """Split-18 adds num_outputs (uneven last chunk) as the alternative to sizes."""
    return _split(n, n.ints_input(1, "split"), n.attr("num_outputs"))


# ---- Concat, Gather --------------------------------------------------------------------------


@converter("Concat", since=4)
def concat(n: OnnxNode) -> list[str]:
    inputs = [i for i in n.inputs if i]
    if not inputs:
        raise n.shape_error("takes at least one input")
    if n.attr("axis") is None:
        raise n.unsupported("the required attribute 'axis' is missing")
    ax = norm_axis(n, n.attr("axis"), n.b.types[inputs[0]].rank)
    if len(inputs) == 1:
        return inputs
    return [n.op("concat", *inputs, axis=ax)]


@converter("Gather", since=1)
def gather(n: OnnxNode) -> list[str]:
    """Folds at import when data and indices are constant (shape arithmetic)."""
    ax = norm_axis(n, n.attr("axis", 0), n.rank(0))
    return [n.op("gather", n.input(0), n.input(1), axis=ax)]


# ---- Pad -------------------------------------------------------------------------------------

PAD_MODES = ("constant", "reflect", "edge")


def _pad(
    n: OnnxNode, pads: list[int], mode: str, value: float, axes: list[int] | None = None
) -> str:
    """The IR's `pad` takes ONNX's pads verbatim (negative ones crop); only `axes` (Pad-18)
    needs expanding to one begin / end per dim."""
    rank = n.rank(0)
    if mode not in PAD_MODES:
        raise n.unsupported(f"mode {mode!r} is not supported (modelc pads {', '.join(PAD_MODES)})")
    if axes is not None:
        axes = [norm_axis(n, a, rank, "axes entry") for a in axes]  # order pairs with pads
        if len(set(axes)) != len(axes):
            raise n.shape_error(f"axes {axes} name an axis twice")
        if len(pads) != 2 * len(axes):
            raise n.shape_error(f"pads {pads} should have {2 * len(axes)} entries for axes {axes}")
        full = [0] * (2 * rank)
        for k, ax in enumerate(axes):
            full[ax], full[rank + ax] = pads[k], pads[len(axes) + k]
        pads = full
    if len(pads) != 2 * rank:
        raise n.shape_error(f"pads {pads} should have {2 * rank} entries for rank {rank}")
    if not any(pads):
        return n.input(0)
    return n.op("pad", n.input(0), pads=pads, mode=mode, value=float(value))


@converter("Pad", since=2)
def pad_2(n: OnnxNode) -> list[str]:
    """pads, mode and value are attributes."""
    pads = n.ints_attr("pads")
    if pads is None:
        raise n.unsupported("the required attribute 'pads' is missing")
    return [_pad(n, pads, n.attr("mode", "constant"), n.attr("value", 0.0))]


@converter("Pad", since=11)
def pad_11(n: OnnxNode) -> list[str]:
    """pads, constant_value and (from Pad-18) axes are inputs; they must be constant."""
    pads = n.ints_input(1, "pads")
    if pads is None:
        raise n.unsupported("input 1 (pads) is required")
    value = 0.0
    if n.has_input(2):
        data = np.asarray(n.const(2, "constant_value")).reshape(-1)
        value = float(data[0]) if data.size else 0.0
    return [_pad(n, pads, n.attr("mode", "constant"), value, n.ints_input(3, "axes"))]
