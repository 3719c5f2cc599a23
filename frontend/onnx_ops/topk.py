"""TopK: the IR's `topk` with k made a compile-time constant.

TopK-1 takes k as an attribute; from TopK-10 it is an input (a 1-element int64 tensor), which must
be constant (static shapes: k is the output's size). TopK-11 adds `largest` and `sorted`; before
it the op always returned the largest elements, sorted.
"""

from __future__ import annotations

import numpy as np

from modelc.frontend.onnx_ops.common import axis as norm_axis
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter


def _topk(n: OnnxNode, k: int) -> list[str]:
    rank = n.rank(0)
    if rank == 0:
        raise n.shape_error("the input must have rank >= 1")
    ax = norm_axis(n, n.attr("axis", -1), rank)
    dim = n.shape(0)[ax]
    if not 0 <= k <= dim:
        raise n.shape_error(f"k={k} must lie in [0, {dim}] (axis {ax} of {n.shape(0)})")
    hint = n.proto.output[0] or n.loc
    values, indices = n.b.add_node(
        "topk",
        [n.input(0)],
        {
            "k": k,
            "axis": ax,
            "largest": bool(n.attr("largest", 1)),
            "sorted": bool(n.attr("sorted", 1)),
        },
        loc=n.loc,
        hints=[f"{hint}_values", f"{hint}_indices"],
    )
    return [values, indices]


@converter("TopK", since=1)
def topk_1(n: OnnxNode) -> list[str]:
    """k is an attribute; the largest elements, sorted."""
    k = n.attr("k")
    if k is None:
        raise n.unsupported("the required attribute 'k' is missing")
    return _topk(n, int(k))


@converter("TopK", since=10)
def topk_10(n: OnnxNode) -> list[str]:
    """k is input 1 (one int64), constant at compile time; TopK-11's largest / sorted are read
    when present (their defaults are TopK-10's behaviour)."""
    k = np.asarray(n.const(1, "k")).reshape(-1)
    if k.size != 1:
        raise n.shape_error(f"k must hold one value, got {k.size}")
    return _topk(n, int(k[0]))
