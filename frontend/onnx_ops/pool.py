"""Pooling ONNX ops: MaxPool, AveragePool and the global pools.

auto_pad becomes explicit pads. With SAME_* the pads already make the output `ceil(in / stride)`
long, exactly what floor mode computes from them, so ceil_mode is dropped there.
"""

from __future__ import annotations

from modelc.frontend.onnx_ops.common import spatial_attrs
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter


def _pool_attrs(n: OnnxNode) -> dict[str, object]:
    shape = n.shape(0)
    if len(shape) < 3:
        raise n.shape_error(f"X {shape} has no spatial dims")
    kernel = n.ints_attr("kernel_shape")
    if kernel is None or len(kernel) != len(shape) - 2:
        raise n.shape_error(f"kernel_shape {kernel} does not fit X {shape}")
    strides, pads, dilations = spatial_attrs(n, shape[2:], kernel)
    same = n.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER")
    return {
        "kernel": kernel,
        "strides": strides,
        "pads": pads,
        "dilations": dilations,
        "ceil_mode": bool(n.attr("ceil_mode", 0)) and not same,
    }


@converter("MaxPool", since=8)
def max_pool(n: OnnxNode) -> list[str]:
    """MaxPool-8 added the Indices output (and storage_order, which only affects it);
    MaxPool-10 added ceil_mode and dilations."""
    if n.wants_output(1):
        raise n.unsupported(
            "the Indices output (output 1) is not supported; modelc computes the pooled values only"
        )
    return [n.op("max_pool", n.input(0), **_pool_attrs(n))]


@converter("AveragePool", since=7)
def average_pool(n: OnnxNode) -> list[str]:
    """AveragePool-7 added count_include_pad, -10 ceil_mode, -19 dilations (the IR's avg_pool
    has none, so only 1s are accepted)."""
    attrs = _pool_attrs(n)
    dilations = attrs.pop("dilations")
    if any(d != 1 for d in dilations):  # type: ignore[attr-defined]
        raise n.unsupported(f"dilations {dilations} are not supported for average pooling")
    attrs["count_include_pad"] = bool(n.attr("count_include_pad", 0))
    return [n.op("avg_pool", n.input(0), **attrs)]


def _global(n: OnnxNode, ir_op: str) -> list[str]:
    rank = n.rank(0)
    if rank < 3:
        raise n.shape_error(f"X {n.shape(0)} has no spatial dims")
    return [n.op(ir_op, n.input(0), axes=list(range(2, rank)), keepdims=True)]


@converter("GlobalAveragePool", since=1)
def global_average_pool(n: OnnxNode) -> list[str]:
    return _global(n, "reduce_mean")


@converter("GlobalMaxPool", since=1)
def global_max_pool(n: OnnxNode) -> list[str]:
    return _global(n, "reduce_max")
