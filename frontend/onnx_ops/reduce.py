"""Reductions: ReduceSum/Mean/Max/Min/Prod, the composed ones (L1, L2, SumSquare, LogSum,
LogSumExp), ArgMax/ArgMin.

Axes moved from an attribute to an input at ReduceSum-13 and at version 18 for the others; both
forms share one conversion. Axes that are absent (or empty) mean all axes, unless
`noop_with_empty_axes` is set: then nothing is reduced (ReduceSum is an identity, ReduceL1 an
abs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from modelc.frontend.onnx_ops.common import axes as norm_axes
from modelc.frontend.onnx_ops.common import axis as norm_axis
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter, register_converter
from modelc.ir import dtypes as D
from modelc.ir.types import TensorType

ConverterFn = Callable[[OnnxNode], Sequence[str]]
# Emits the reduction of x over axes (normalized; empty = all; None = none, which is what
# noop_with_empty_axes asks for: the composed reductions then still apply their elementwise
# parts, e.g. ReduceL1 becomes abs, as in onnxruntime and the ONNX reference).
ReduceFn = Callable[[OnnxNode, str, "list[int] | None", bool], str]


def _red(n: OnnxNode, ir_op: str, x: str, axes: list[int] | None, keepdims: bool) -> str:
    if axes is None:
        return x
    t = n.b.types[x]
    reduced = axes or list(range(t.rank))
    if ir_op in _EMPTY_FILL and any(t.shape[a] == 0 for a in reduced):
        return _empty_extreme(n, ir_op, t, reduced, keepdims)
    if n.b.types[x].dtype == D.boolean:  # ReduceMax/Min-20 take bool (any / all): via u8
        y = n.op(ir_op, n.cast(x, D.u8), axes=axes, keepdims=keepdims)
        return n.cast(y, D.boolean)
    return n.op(ir_op, x, axes=axes, keepdims=keepdims)


# max / min over no elements: ONNX (ReduceMax-20) gives the identity of the operation.
_EMPTY_FILL = {"reduce_max": -1, "reduce_min": 1}


def _empty_extreme(
    n: OnnxNode, ir_op: str, t: TensorType, reduced: list[int], keepdims: bool
) -> str:
    """A max / min over an empty axis is a constant: -inf / +inf (lowest / highest for
    integers, False / True for bool)."""
    sign = _EMPTY_FILL[ir_op]
    if t.dtype == D.boolean:
        fill: float | int | bool = sign > 0
    elif t.dtype.is_float:
        fill = sign * np.inf
    else:
        fill = t.dtype.max if sign > 0 else t.dtype.min
    shape = [
        1 if i in reduced else d for i, d in enumerate(t.shape) if keepdims or i not in reduced
    ]
    return n.constant(np.full(shape, fill, dtype=t.dtype.numpy), t.dtype)


def _simple(ir_op: str) -> ReduceFn:
    def emit(n: OnnxNode, x: str, axes: list[int] | None, keepdims: bool) -> str:
        return _red(n, ir_op, x, axes, keepdims)

    return emit


def _l1(n: OnnxNode, x: str, axes: list[int] | None, keepdims: bool) -> str:
    return _red(n, "reduce_sum", n.op("abs", x), axes, keepdims)


def _sum_square(n: OnnxNode, x: str, axes: list[int] | None, keepdims: bool) -> str:
    return _red(n, "reduce_sum", n.op("mul", x, x), axes, keepdims)


def _l2(n: OnnxNode, x: str, axes: list[int] | None, keepdims: bool) -> str:
    return n.op("sqrt", _sum_square(n, x, axes, keepdims))


def _log_sum(n: OnnxNode, x: str, axes: list[int] | None, keepdims: bool) -> str:
    return n.op("log", _red(n, "reduce_sum", x, axes, keepdims))


def _log_sum_exp(n: OnnxNode, x: str, axes: list[int] | None, keepdims: bool) -> str:
    """max + log(sum(exp(x - max))): the stable form (onnxruntime computes it so too)."""
    if axes is None:
        return x  # log(exp(x)), without the overflow
    peak = _red(n, "reduce_max", x, axes, True)
    total = n.op("reduce_sum", n.op("exp", n.op("sub", x, peak)), axes=axes, keepdims=True)
    y = n.op("add", n.op("log", total), peak)
    if keepdims:
        return y
    drop = set(axes or range(n.b.types[x].rank))
    return n.reshape(y, [d for i, d in enumerate(n.b.types[x].shape) if i not in drop])


# (ONNX op, the version whose axes became an input, how it lowers)
REDUCTIONS: list[tuple[str, int, ReduceFn]] = [
    ("ReduceSum", 13, _simple("reduce_sum")),
    ("ReduceMean", 18, _simple("reduce_mean")),
    ("ReduceMax", 18, _simple("reduce_max")),
    ("ReduceMin", 18, _simple("reduce_min")),
    ("ReduceProd", 18, _simple("reduce_prod")),
    ("ReduceL1", 18, _l1),
    ("ReduceL2", 18, _l2),
    ("ReduceSumSquare", 18, _sum_square),
    ("ReduceLogSum", 18, _log_sum),
    ("ReduceLogSumExp", 18, _log_sum_exp),
]


def _reduce(n: OnnxNode, emit: ReduceFn, axes: list[int] | None) -> list[str]:
    x = n.input(0)
    keepdims = bool(n.attr("keepdims", 1))
    if axes:
        return [emit(n, x, norm_axes(n, axes, n.rank(0)), keepdims)]
    return [emit(n, x, None if n.attr("noop_with_empty_axes", 0) else [], keepdims)]


def _attr_form(emit: ReduceFn) -> ConverterFn:
    def convert(n: OnnxNode) -> list[str]:
        return _reduce(n, emit, n.ints_attr("axes"))

    return convert


def _input_form(emit: ReduceFn) -> ConverterFn:
    def convert(n: OnnxNode) -> list[str]:
        return _reduce(n, emit, n.ints_input(1, "axes"))

    return convert


for _op, _input_since, _emit in REDUCTIONS:
    register_converter(_op, 1, _attr_form(_emit))
    register_converter(_op, _input_since, _input_form(_emit))


def _arg(n: OnnxNode, ir_op: str) -> list[str]:
    """select_last_index (ArgMax-12) picks the last of equal extremes."""
    return [
        n.op(
            ir_op,
            n.input(0),
            axis=norm_axis(n, n.attr("axis", 0), n.rank(0)),
            keepdims=bool(n.attr("keepdims", 1)),
            select_last_index=bool(n.attr("select_last_index", 0)),
        )
    ]


@converter("ArgMax", since=1)
def argmax(n: OnnxNode) -> list[str]:
    return _arg(n, "argmax")


@converter("ArgMin", since=1)
def argmin(n: OnnxNode) -> list[str]:
    return _arg(n, "argmin")
