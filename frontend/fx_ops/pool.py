"""Pooling and upsampling ATen ops: max / avg / adaptive-avg pooling, nearest and bilinear
upsampling.

torch's pooling semantics are the IR's (which follow onnxruntime): with ceil_mode the last window
must start inside the input or the left padding, max pooling never selects padding, and average
pooling with count_include_pad divides by the window clipped to the padded input.

Nearest upsampling is what the ONNX frontend makes of Resize: torch's source index per output
index (computed here in float32, as torch does), then reshape -> expand -> reshape for integer
repeats and a constant-index gather per axis otherwise. Bilinear upsampling maps to the IR's
`resize` op.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelc.frontend.fx_ops.node import FxNode
from modelc.frontend.fx_ops.registry import converter
from modelc.ir.opdef import all_ops

F32 = np.float32


def _window(n: FxNode, x: str) -> tuple[list[int], list[int], list[int]]:
    """(kernel, strides, pads) of a pooling node; an empty stride means the kernel size."""
    k = n.rank(x) - 2
    kernel = n.ints("kernel_size", k)
    strides = n.ints("stride", k) or list(kernel)
    padding = n.ints("padding", k)
    if not len(kernel) == len(strides) == len(padding) == k:
        raise n.shape_error(
            f"kernel_size {kernel}, stride {strides} and padding {padding} should each have "
            f"{k} entries"
        )
    return kernel, strides, padding + padding


@converter(
    "aten.max_pool1d.default",
    "aten.max_pool2d.default",
    "aten.max_pool3d.default",
    "aten.max_pool2d_with_indices.default",
    "aten.max_pool3d_with_indices.default",
)
def max_pool(n: FxNode) -> str | list[str]:
    """The indices output (for max_unpool) is not made; reading it is an error."""
    x = n.tensor("self")
    kernel, strides, pads = _window(n, x)
    y = n.op(
        "max_pool",
        x,
        kernel=kernel,
        strides=strides,
        pads=pads,
        dilations=n.ints("dilation", len(kernel)),
        ceil_mode=bool(n.arg("ceil_mode", False)),
    )
    return [y] if n.target.endswith("with_indices.default") else y


@converter("aten.avg_pool1d.default", "aten.avg_pool2d.default", "aten.avg_pool3d.default")
def avg_pool(n: FxNode) -> str:
    x = n.tensor("self")
    if n.arg("divisor_override") is not None:
        raise n.unsupported("divisor_override is not supported")
    kernel, strides, pads = _window(n, x)
    return n.op(
        "avg_pool",
        x,
        kernel=kernel,
        strides=strides,
        pads=pads,
        ceil_mode=bool(n.arg("ceil_mode", False)),
        count_include_pad=bool(n.arg("count_include_pad", True)),
    )


@converter("aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default")
def adaptive_avg_pool(n: FxNode) -> str:
    """Output 1x1: reduce_mean over the spatial axes (what GlobalAveragePool becomes). Sizes
    that divide the input: avg_pool with kernel = stride = input / output. Otherwise each
    output cell averages rows [floor(i * in / out), ceil((i + 1) * in / out)); a rectangle's
    mean is the mean over rows of the mean over columns, so it is one slice + reduce_mean per
    output index and axis, concatenated."""
    x = n.tensor("self")
    shape = n.shape(x)
    spatial = shape[2:]
    out = n.out_shape[2:]
    axes = list(range(2, len(shape)))
    if all(o == 1 for o in out):
        return n.op("reduce_mean", x, axes=axes, keepdims=True)
    if all(i % o == 0 for i, o in zip(spatial, out)):
        kernel = [i // o for i, o in zip(spatial, out)]
        if all(k == 1 for k in kernel):
            return x
        pads = [0] * (2 * len(kernel))
        return n.op("avg_pool", x, kernel=kernel, strides=kernel, pads=pads)
    for axis, i, o in zip(axes, spatial, out):
        if i == o:
            continue
        cells = [
            n.op(
                "reduce_mean",
                n.slice(x, axis, (j * i) // o, -((-(j + 1) * i) // o)),
                axes=[axis],
                keepdims=True,
            )
            for j in range(o)
        ]
        x = cells[0] if len(cells) == 1 else n.op("concat", *cells, axis=axis)
    return x


@converter("aten.adaptive_max_pool2d.default")
def adaptive_max_pool(n: FxNode) -> list[str]:
    """Output 1x1: reduce_max over the spatial axes; sizes that divide the input: max_pool with
    kernel = stride = input / output. The indices output is not made."""
    x = n.tensor("self")
    shape = n.shape(x)
    out = n.out_shape[2:]
    if all(o == 1 for o in out):
        return [n.op("reduce_max", x, axes=list(range(2, len(shape))), keepdims=True)]
    if any(i % o for i, o in zip(shape[2:], out)):
        raise n.unsupported(
            f"adaptive max pooling from {list(shape[2:])} to {list(out)} (sizes that do not "
            "divide the input) is not supported"
        )
    kernel = [i // o for i, o in zip(shape[2:], out)]
    pads = [0] * (2 * len(kernel))
    dilations = [1] * len(kernel)
    return [n.op("max_pool", x, kernel=kernel, strides=kernel, pads=pads, dilations=dilations)]


# ---- upsampling ------------------------------------------------------------------------------


def _scales(n: FxNode, k: int) -> list[float | None]:
    """The scale factor per spatial dim that torch computes indices with (None: in / out)."""
    factors = n.arg("scale_factors")
    if factors is not None:
        return [float(f) for f in factors]
    names = ["scales_d", "scales_h", "scales_w"][-k:] if k > 1 else ["scales"]
    return [n.arg(name) for name in names]


def _nearest_indices(in_len: int, out_len: int, scale: float | None, exact: bool) -> np.ndarray:
    """torch's nearest source indices: floor((dst + offset) * s), s = 1 / scale or in / out,
    in float32; clamped to the input."""
    if out_len == in_len and not exact:
        return np.arange(in_len)
    s = F32(1.0 / scale) if scale else F32(in_len) / F32(out_len)
    offset = F32(0.5) if exact else F32(0.0)
    src = np.floor((np.arange(out_len, dtype=F32) + offset) * s)
    return np.minimum(src, in_len - 1).astype(np.int64)


def _apply_picks(n: FxNode, x: str, picks: Sequence[np.ndarray]) -> str:
    """Per-axis index lists as the ONNX frontend applies them: a broadcast copy for integer
    repeats, else one gather per changed axis."""
    shape = n.shape(x)
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


@converter(
    "aten.upsample_nearest1d.vec",
    "aten.upsample_nearest2d.vec",
    "aten.upsample_nearest3d.vec",
    "aten.upsample_nearest1d.default",
    "aten.upsample_nearest2d.default",
    "aten.upsample_nearest3d.default",
    "aten._upsample_nearest_exact1d.vec",
    "aten._upsample_nearest_exact2d.vec",
    "aten._upsample_nearest_exact3d.vec",
    "aten._upsample_nearest_exact1d.default",
    "aten._upsample_nearest_exact2d.default",
    "aten._upsample_nearest_exact3d.default",
)
def upsample_nearest(n: FxNode) -> str:
    x = n.tensor("input") if n.arg("input") is not None else n.tensor("self")
    shape, out = n.shape(x), n.out_shape
    k = len(shape) - 2
    exact = "_exact" in n.target
    scales = _scales(n, k)
    picks = [np.arange(d) for d in shape[:2]]
    picks += [_nearest_indices(i, o, s, exact) for i, o, s in zip(shape[2:], out[2:], scales)]
    return _apply_picks(n, x, picks)


@converter(
    "aten.upsample_bilinear2d.vec",
    "aten.upsample_bilinear2d.default",
    "aten.upsample_bicubic2d.vec",
    "aten.upsample_bicubic2d.default",
)
def upsample_interpolating(n: FxNode) -> str:
    """IR resize, linear or cubic (Keys, a = -0.75, edge taps clamped, as torch): align_corners
    is ONNX's 'align_corners' transformation, otherwise 'pytorch_half_pixel' with torch's scale
    (the given scale factor, or output / input)."""
    x = n.tensor("input") if n.arg("input") is not None else n.tensor("self")
    if "resize" not in all_ops():
        raise n.unsupported(
            "bilinear / bicubic upsampling needs the graph-IR op resize, which this modelc "
            "does not have (nearest upsampling is supported)"
        )
    shape, out = n.shape(x), n.out_shape
    scales = _scales(n, 2)
    full = [1.0, 1.0] + [float(s) if s else o / i for s, i, o in zip(scales, shape[2:], out[2:])]
    align = bool(n.arg("align_corners"))
    cubic = "bicubic" in n.target
    return n.op(
        "resize",
        x,
        mode="cubic" if cubic else "linear",
        coordinate_transformation_mode="align_corners" if align else "pytorch_half_pixel",
        sizes=list(out),
        scales=full,
        **({"cubic_coeff_a": -0.75} if cubic else {}),
    )
