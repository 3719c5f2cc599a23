"""Trilu, CumSum, GatherElements and ScatterND.

Trilu keeps the upper (or lower) triangle of the last two dims. Shapes are static, so which
elements it keeps is known at import: it becomes `where(mask, x, 0)` with a constant bool mask
of the last two dims (broadcast over the batch), an elementwise op like any other. The others are
the IR's cumsum / gather_elements / scatter_nd with their axis or k inputs made constant.
"""

from __future__ import annotations

import numpy as np

from modelc.frontend.onnx_ops.common import axis as norm_axis
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter
from modelc.ir import dtypes as D


@converter("Trilu", since=14)
def trilu(n: OnnxNode) -> list[str]:
    """upper=1: keep j - i >= k; upper=0: keep j - i <= k (k: optional input, default 0)."""
    shape = n.shape(0)
    if len(shape) < 2:
        raise n.shape_error(f"the input must have rank >= 2, got {shape}")
    k = 0
    if n.has_input(1):
        k = int(np.asarray(n.const(1, "k")).reshape(-1)[0])
    rows, cols = shape[-2:]
    diff = np.arange(cols)[None, :] - np.arange(rows)[:, None]
    mask = diff >= k if n.attr("upper", 1) else diff <= k
    x = n.input(0)
    if mask.all():
        return [x]
    return [n.op("where", n.constant(mask, D.boolean), x, n.scalar(0, like=x))]


@converter("CumSum", since=11)
def cumsum(n: OnnxNode) -> list[str]:
    """axis is input 1 (a constant scalar)."""
    ax = int(np.asarray(n.const(1, "axis")).reshape(-1)[0])
    y = n.op(
        "cumsum",
        n.input(0),
        axis=norm_axis(n, ax, n.rank(0)),
        exclusive=bool(n.attr("exclusive", 0)),
        reverse=bool(n.attr("reverse", 0)),
    )
    return [y]


@converter("GatherElements", since=11)
def gather_elements(n: OnnxNode) -> list[str]:
    ax = norm_axis(n, n.attr("axis", 0), n.rank(0))
    return [n.op("gather_elements", n.input(0), n.input(1), axis=ax)]


@converter("ScatterND", since=11)
def scatter_nd(n: OnnxNode) -> list[str]:
    """ScatterND-16 adds reduction add / mul, ScatterND-18 max / min; the attribute is read
    when present, so one converter serves every version."""
    reduction = n.attr("reduction", "none")
    return [n.op("scatter_nd", n.input(0), n.input(1), n.input(2), reduction=reduction)]
