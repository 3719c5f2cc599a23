"""Helpers several converter families share: axis normalization and spatial padding."""

from __future__ import annotations

import math
from collections.abc import Sequence

from modelc.frontend.onnx_ops.node import OnnxNode


def axis(n: OnnxNode, value: int, rank: int, what: str = "axis") -> int:
    """A possibly negative ONNX axis as a non-negative one (the IR never sees negative axes)."""
    if not -rank <= value < max(rank, 1):
        raise n.shape_error(f"{what} {value} is out of range for an input of rank {rank}")
    return value % max(rank, 1)


def axes(n: OnnxNode, values: Sequence[int], rank: int, what: str = "axes") -> list[int]:
    """Normalized, sorted, duplicate-free axes."""
    out = sorted({axis(n, v, rank, what) for v in values})
    if len(out) != len(values):
        raise n.shape_error(f"{what} {list(values)} name an axis twice")
    return out


def spatial_pads(
    n: OnnxNode,
    in_spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> list[int]:
    """Explicit pads (all begins, then all ends) for Conv / pools from `auto_pad` and `pads`.

    SAME_UPPER / SAME_LOWER give `ceil(in / stride)` outputs; the odd pad goes to the end
    (UPPER) or the beginning (LOWER), as in the ONNX spec and onnxruntime.
    """
    k = len(in_spatial)
    auto_pad = n.attr("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = n.ints_attr("pads", [0] * (2 * k))
        assert pads is not None
        if len(pads) != 2 * k:
            raise n.shape_error(f"pads {pads} should have {2 * k} entries")
        return pads
    if auto_pad == "VALID":
        return [0] * (2 * k)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise n.unsupported(f"auto_pad {auto_pad!r} is not an ONNX auto_pad value")
    begins, ends = [], []
    for size, kk, s, d in zip(in_spatial, kernel, strides, dilations):
        out = math.ceil(size / s)
        total = max(0, (out - 1) * s + (kk - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def spatial_attrs(
    n: OnnxNode, in_spatial: Sequence[int], kernel: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    """`(strides, pads, dilations)` of a Conv or pool node, defaults filled, auto_pad resolved."""
    k = len(in_spatial)
    strides = n.ints_attr("strides", [1] * k)
    dilations = n.ints_attr("dilations", [1] * k)
    assert strides is not None and dilations is not None
    if len(strides) != k or len(dilations) != k:
        raise n.shape_error(
            f"strides {strides} / dilations {dilations} should have {k} entries "
            f"for {k} spatial dims"
        )
    return strides, spatial_pads(n, in_spatial, kernel, strides, dilations), dilations
