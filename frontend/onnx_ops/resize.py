"""Resize and Upsample.

Nearest-neighbour resizing reads, along each resized axis, one input index per output index;
those indices depend only on shapes and attributes, so they are computed here (in float32, as
onnxruntime does, so that ties round the same way) and the op becomes a constant-index `gather`
per resized axis. The common case, an integer upscale that repeats every element k times, is a
reshape -> expand -> reshape instead (a broadcast copy, no index loads).

Linear and cubic modes become the IR's `resize` op, whose attributes are the static normal form
this file computes: the full output shape, the float32 scale of every dim, and the modes. Both
paths share the coordinate transform (`modelc.ir.ops.resize.coordinate`). antialias=1 and
tf_crop_and_resize are UnsupportedOpError.

Sizes and scales follow onnxruntime and the ONNX reference: with `sizes`, the scale of a dim is
size / in (float32); with keep_aspect_ratio_policy (Resize-18) every resized axis takes the one
common scale, and its size is round(scale * in).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from modelc.frontend.onnx_ops.common import axis as norm_axis
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter
from modelc.ir.ops.resize import COORDINATE_MODES, coordinate

F32 = np.float32


ROUNDING: dict[str, Callable[[np.ndarray, bool], np.ndarray]] = {
    "round_prefer_floor": lambda c, down: np.ceil(c - F32(0.5)),
    "round_prefer_ceil": lambda c, down: np.floor(c + F32(0.5)),
    "floor": lambda c, down: np.floor(c),
    "ceil": lambda c, down: np.ceil(c),
    # Upsample and Resize-10 (onnxruntime's "simple"): ceil when shrinking, else truncate.
    "simple": lambda c, down: np.ceil(c) if down else np.trunc(c),
}


def _indices(
    n: OnnxNode, in_len: int, out_len: int, scale: float, coord_mode: str, nearest_mode: str
) -> np.ndarray:
    s = F32(scale)
    rounding = ROUNDING.get(nearest_mode)
    if rounding is None:
        raise n.unsupported(f"nearest_mode {nearest_mode!r} is not an ONNX nearest_mode")
    with np.errstate(all="ignore"):
        coords = coordinate(coord_mode, np.arange(out_len, dtype=F32), in_len, out_len, s, F32)
        picked = rounding(np.asarray(coords, dtype=F32), bool(s < 1))
    return np.clip(picked, 0, max(in_len - 1, 0)).astype(np.int64)


def _emit(n: OnnxNode, picks: Sequence[np.ndarray]) -> str:
    """Apply per-axis index lists: a broadcast for integer repeats, else gathers."""
    x, shape = n.input(0), n.shape(0)
    if any(d == 0 for d in shape):
        raise n.shape_error(f"cannot resize the empty tensor {shape}")
    repeats = []
    for d, idx in zip(shape, picks):
        k = len(idx) // d
        repeats.append(k if k >= 1 and np.array_equal(idx, np.repeat(np.arange(d), k)) else 0)
    if all(repeats):
        if all(k == 1 for k in repeats):
            return x
        split = [v for d in shape for v in (d, 1)]
        wide = [v for d, k in zip(shape, repeats) for v in (d, k)]
        y = n.op("expand", n.reshape(x, split), shape=wide)
        return n.reshape(y, [d * k for d, k in zip(shape, repeats)])
    for ax, (d, idx) in enumerate(zip(shape, picks)):
        if not np.array_equal(idx, np.arange(d)):
            x = n.op("gather", x, n.constant(idx), axis=ax)
    return x


def _full_shape(
    n: OnnxNode, scales: Sequence[float] | None, sizes: Sequence[int] | None
) -> tuple[list[int], list[float]]:
    """(output shape, float32 scale per dim) from the scales or sizes input and Resize-18's axes
    and keep_aspect_ratio_policy."""
    shape = n.shape(0)
    rank = len(shape)
    axes = [norm_axis(n, a, rank, "axes entry") for a in n.ints_attr("axes", range(rank)) or []]
    full_sizes, full_scales = list(shape), [1.0] * rank
    if sizes is not None:
        if len(sizes) != len(axes):
            raise n.shape_error(f"sizes {list(sizes)} should have one entry per axis {axes}")
        if any(shape[a] == 0 for a in axes):
            raise n.shape_error(f"cannot resize the empty tensor {shape}")
        policy = n.attr("keep_aspect_ratio_policy", "stretch")
        if policy == "stretch":
            for a, s in zip(axes, sizes):
                full_sizes[a] = int(s)
                full_scales[a] = float(F32(s) / F32(shape[a]))
            return full_sizes, full_scales
        if policy not in ("not_larger", "not_smaller"):
            raise n.unsupported(f"keep_aspect_ratio_policy {policy!r} is not an ONNX policy")
        ratios = [s / shape[a] for s, a in zip(sizes, axes)]
        common = min(ratios) if policy == "not_larger" else max(ratios)
        for a in axes:
            full_sizes[a] = math.floor(common * shape[a] + 0.5)
            full_scales[a] = float(F32(common))
        return full_sizes, full_scales
    if scales is None:
        raise n.unsupported("needs scales or sizes")
    if len(scales) != len(axes) or any(not s > 0 for s in scales):
        raise n.shape_error(f"scales {list(scales)} should be one positive scale per axis {axes}")
    for a, s in zip(axes, scales):
        full_scales[a] = float(F32(s))
    full_sizes = [int(np.floor(F32(d) * F32(s))) for d, s in zip(shape, full_scales)]
    return full_sizes, full_scales


def _resize(
    n: OnnxNode,
    scales: Sequence[float] | None,
    sizes: Sequence[int] | None,
    coord_mode: str,
    nearest_mode: str,
) -> str:
    mode = n.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic") or (mode == "cubic" and n.opset < 11):
        raise n.unsupported(f"mode {mode!r} is not an interpolation mode of this op version")
    if coord_mode not in COORDINATE_MODES:
        raise n.unsupported(f"coordinate_transformation_mode {coord_mode!r} is not supported")
    shape = n.shape(0)
    full_sizes, full_scales = _full_shape(n, scales, sizes)
    if mode != "nearest":
        if n.attr("antialias", 0):
            raise n.unsupported(f"antialias=1 ({mode} mode) is not supported")
        return n.op(
            "resize",
            n.input(0),
            mode=mode,
            sizes=full_sizes,
            scales=full_scales,
            coordinate_transformation_mode=coord_mode,
            cubic_coeff_a=n.attr("cubic_coeff_a", -0.75),
            exclude_outside=bool(n.attr("exclude_outside", 0)),
        )
    # An axis that keeps its size at scale 1 is left alone (in tf_half_pixel_for_nn the formula
    # would shift it by half a pixel; onnxruntime does not resize such axes either).
    picks = [
        np.arange(d) if (o, s) == (d, 1.0) else _indices(n, d, o, s, coord_mode, nearest_mode)
        for d, o, s in zip(shape, full_sizes, full_scales)
    ]
    return _emit(n, picks)


def _floats(data: np.ndarray | None) -> list[float] | None:
    """A scales input; an empty tensor counts as absent (Resize-11 passes sizes that way)."""
    if data is None or data.size == 0:
        return None
    return [float(v) for v in data.reshape(-1)]


@converter("Upsample", since=9)
def upsample(n: OnnxNode) -> list[str]:
    """Upsample-9/10: scales is an input; nearest or linear mode, asymmetric coordinates,
    onnxruntime's rounding."""
    scales = _floats(n.const(1, "scales"))
    return [_resize(n, scales, None, "asymmetric", "simple")]


@converter("Resize", since=10)
def resize_10(n: OnnxNode) -> list[str]:
    """Resize-10 is Upsample with another name."""
    scales = _floats(n.const(1, "scales"))
    return [_resize(n, scales, None, "asymmetric", "simple")]


@converter("Resize", since=11)
def resize_11(n: OnnxNode) -> list[str]:
    """Resize-11+: inputs (X, roi, scales, sizes); scales or sizes given; cubic mode with
    cubic_coeff_a and exclude_outside; Resize-13 makes roi and scales optional; Resize-18 adds
    axes, keep_aspect_ratio_policy and antialias (0 only); Resize-19 half_pixel_symmetric. Later
    versions read the attributes they have, so one converter serves them all."""
    coord_mode = n.attr("coordinate_transformation_mode", "half_pixel")
    if coord_mode == "tf_crop_and_resize":
        raise n.unsupported("coordinate_transformation_mode 'tf_crop_and_resize' is not supported")
    scales = _floats(n.const(2, "scales")) if n.has_input(2) else None
    sizes = n.ints_input(3, "sizes")
    if sizes is not None and not sizes:
        sizes = None
    return [_resize(n, scales, sizes, coord_mode, n.attr("nearest_mode", "round_prefer_floor"))]
