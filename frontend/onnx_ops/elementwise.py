"""Elementwise ONNX ops: math, arithmetic, comparison, logic, Where, Clip, Cast.

Most of these map one-to-one onto a graph-IR op, so they are table rows: (ONNX op, the op version
the mapping holds from, IR op). Versions later than the listed one only widened the type lists.
All binary ONNX ops from opset 7 on broadcast like numpy, as the IR ops do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from modelc.frontend.onnx_ops.dtypes import to_dtype
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter, register_converter

ConverterFn = Callable[[OnnxNode], Sequence[str]]

# (ONNX op, since, IR op): one input, one output, no attributes.
UNARY = [
    ("Relu", 6, "relu"),
    ("Sigmoid", 6, "sigmoid"),
    ("Tanh", 6, "tanh"),
    ("Exp", 6, "exp"),
    ("Log", 6, "log"),
    ("Sqrt", 6, "sqrt"),
    ("Neg", 6, "neg"),
    ("Abs", 6, "abs"),
    ("Reciprocal", 6, "reciprocal"),
    ("Floor", 6, "floor"),
    ("Ceil", 6, "ceil"),
    ("Erf", 9, "erf"),
    ("Round", 11, "round"),
    ("Sin", 7, "sin"),
    ("Cos", 7, "cos"),
    ("Softplus", 1, "softplus"),
    ("HardSwish", 14, "hard_swish"),
    ("Not", 1, "not"),
]

# (ONNX op, since, IR op): two inputs with numpy broadcasting (multidirectional since opset 7).
BINARY = [
    ("Add", 7, "add"),
    ("Sub", 7, "sub"),
    ("Mul", 7, "mul"),
    ("Div", 7, "div"),
    ("Equal", 7, "equal"),
    ("Less", 7, "less"),
    ("Greater", 7, "greater"),
    ("LessOrEqual", 12, "less_equal"),
    ("GreaterOrEqual", 12, "greater_equal"),
    ("And", 7, "and"),
    ("Or", 7, "or"),
    ("Xor", 7, "xor"),
]

# (ONNX op, since, IR op): variadic ops, folded left into a chain of binary ops.
VARIADIC = [
    ("Sum", 6, "add"),
    ("Max", 6, "max"),
    ("Min", 6, "min"),
]


def _unary(ir_op: str) -> ConverterFn:
    def convert(n: OnnxNode) -> list[str]:
        return [n.op(ir_op, n.input(0))]

    return convert


def _binary(ir_op: str) -> ConverterFn:
    def convert(n: OnnxNode) -> list[str]:
        return [n.op(ir_op, n.input(0), n.input(1))]

    return convert


def _chain(n: OnnxNode, ir_op: str) -> str:
    if not n.inputs:
        raise n.shape_error("takes at least one input")
    acc = n.inputs[0]
    for x in n.inputs[1:]:
        acc = n.op(ir_op, acc, x)
    return acc


def _variadic(ir_op: str) -> ConverterFn:
    def convert(n: OnnxNode) -> list[str]:
        return [_chain(n, ir_op)]

    return convert


for _op, _since, _ir in UNARY:
    register_converter(_op, _since, _unary(_ir))
for _op, _since, _ir in BINARY:
    register_converter(_op, _since, _binary(_ir))
for _op, _since, _ir in VARIADIC:
    register_converter(_op, _since, _variadic(_ir))


@converter("Mean", since=6)
def mean(n: OnnxNode) -> list[str]:
    """Sum, then divide by the input count."""
    total = _chain(n, "add")
    if len(n.inputs) == 1:
        return [total]
    return [n.op("div", total, n.scalar(len(n.inputs), like=total))]


@converter("Pow", since=7)
def pow_(n: OnnxNode) -> list[str]:
    """From Pow-12 the exponent may have another type than the base; the IR op wants one
    dtype, so the exponent is cast to the base's (folded when it is a constant)."""
    base, exponent = n.input(0), n.input(1)
    return [n.op("pow", base, n.cast(exponent, n.dtype(0)))]


@converter("Where", since=9)
def where(n: OnnxNode) -> list[str]:
    return [n.op("where", n.input(0), n.input(1), n.input(2))]


@converter("Identity", since=1)
def identity(n: OnnxNode) -> list[str]:
    """No node: the output is the input's value."""
    return [n.input(0)]


# ---- Clip ------------------------------------------------------------------------------------


def _bound(n: OnnxNode, bound: str | float | None) -> str | float | None:
    """A Clip bound as a number when it is known at compile time, else the run-time value."""
    if not isinstance(bound, str):
        return bound
    value = n.b.constant(bound)
    if value is None:
        return bound
    return value.reshape(-1)[0].item() if value.size else None


def _clip(n: OnnxNode, lo: str | float | None, hi: str | float | None) -> str:
    """`clip{min,max}` for float tensors with known bounds; `max`/`min` ops otherwise (a bound
    that is a run-time value, or an integer tensor, where float attributes would not be exact)."""
    x = n.input(0)
    lo, hi = _bound(n, lo), _bound(n, hi)
    attrs: dict[str, float] = {}
    if n.dtype(0).is_float:
        attrs = {k: float(v) for k, v in (("min", lo), ("max", hi)) if isinstance(v, float | int)}
    y = n.op("clip", x, **attrs) if attrs else x
    for ir_op, bound in (("max", lo), ("min", hi)):
        if isinstance(bound, str):
            y = n.op(ir_op, y, bound)
        elif bound is not None and not attrs:
            y = n.op(ir_op, y, n.scalar(bound, like=x))
    return y


@converter("Clip", since=6)
def clip_6(n: OnnxNode) -> list[str]:
    """Bounds are attributes; absent ones mean the float range's ends."""
    return [_clip(n, n.attr("min"), n.attr("max"))]


@converter("Clip", since=11)
def clip_11(n: OnnxNode) -> list[str]:
    """Bounds are optional inputs (scalars); "" means no bound on that side."""
    return [_clip(n, n.input(1) or None, n.input(2) or None)]


# ---- Cast ------------------------------------------------------------------------------------


@converter("Cast", since=6)
def cast(n: OnnxNode) -> list[str]:
    """`to` is an ONNX element type; the saturate / round_mode attributes only concern float8
    and float4 targets, which modelc rejects as types anyway."""
    to = n.attr("to")
    if to is None:
        raise n.unsupported("the required attribute 'to' is missing")
    dtype = to_dtype(to, "the target type (attribute 'to')")
    return [n.cast(n.input(0), dtype)]


@converter("CastLike", since=15)
def cast_like(n: OnnxNode) -> list[str]:
    return [n.cast(n.input(0), n.dtype(1))]
