"""ONNX ops whose result is known at import: Shape, Size, Constant, ConstantOfShape, Range.

Shapes are static in modelc, so Shape and Size are constants, and the shape arithmetic built on
them folds away in the builder.
"""

from __future__ import annotations

import math

import numpy as np

from modelc.errors import UnsupportedTypeError
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter
from modelc.ir import dtypes as D


@converter("Shape", since=1)
def shape(n: OnnxNode) -> list[str]:
    """Shape-15 added start / end (negative counts from the end; clamped to the rank)."""
    dims = n.shape(0)
    rank = len(dims)

    def clamp(v: int) -> int:
        return min(max(v + rank if v < 0 else v, 0), rank)

    start, end = clamp(n.attr("start", 0)), clamp(n.attr("end", rank))
    return [n.constant(np.array(dims[start:end], dtype=np.int64))]


@converter("Size", since=1)
def size(n: OnnxNode) -> list[str]:
    return [n.constant(np.array(math.prod(n.shape(0)), dtype=np.int64))]


_VALUE_ATTRS = {
    "value_float": (D.f32, False),
    "value_floats": (D.f32, True),
    "value_int": (D.i64, False),
    "value_ints": (D.i64, True),
}


@converter("Constant", since=1)
def constant(n: OnnxNode) -> list[str]:
    """Exactly one of the value attributes: a tensor (`value`, `sparse_value`) or the
    scalar / list shorthands of Constant-12."""
    present = [a.name for a in n.proto.attribute]
    if len(present) != 1:
        raise n.unsupported(f"needs exactly one value attribute, has {present}")
    name = present[0]
    if name in ("value", "sparse_value"):
        data, type_ = n.attr(name)
        return [n.constant(data, type_.dtype)]
    if name in _VALUE_ATTRS:
        dtype, is_list = _VALUE_ATTRS[name]
        value = n.attr(name)
        return [n.constant(np.array(value if is_list else value), dtype)]
    if name in ("value_string", "value_strings"):
        raise UnsupportedTypeError(
            f"{n.describe()}: string constants are not supported (modelc has no string type)"
        )
    raise n.unsupported(f"unknown value attribute {name!r}")


@converter("ConstantOfShape", since=9)
def constant_of_shape(n: OnnxNode) -> list[str]:
    """A tensor of the given (constant) shape filled with `value` (default float32 zero)."""
    dims = n.ints_input(0, "shape")
    if dims is None:
        raise n.unsupported("input 0 (shape) is required")
    if any(d < 0 for d in dims):
        raise n.shape_error(f"shape {dims} has negative dims")
    dtype, fill = D.f32, 0.0
    if n.has_attr("value"):
        data, type_ = n.attr("value")
        if data.size != 1:
            raise n.shape_error(f"value must hold one element, holds {data.size}")
        dtype, fill = type_.dtype, data.reshape(-1)[0]
    return [n.constant(np.full(dims, fill, dtype=dtype.numpy), dtype)]


@converter("Range", since=11)
def range_(n: OnnxNode) -> list[str]:
    """start + i * delta for i < max(ceil((limit - start) / delta), 0), computed at import
    (exactly for integers, in double precision for floats, as Range-27's stash_type asks)."""
    start, limit, delta = (
        np.asarray(n.const(k, w)).reshape(-1)[0] for k, w in enumerate(("start", "limit", "delta"))
    )
    dtype = n.dtype(0)
    if dtype.is_float:
        s, lim, d = float(start), float(limit), float(delta)
    else:
        s, lim, d = int(start), int(limit), int(delta)
    if d == 0:
        raise n.shape_error("delta must not be 0")
    count = max(math.ceil((lim - s) / d), 0) if dtype.is_float else max(-((s - lim) // d), 0)
    steps = np.arange(count, dtype=np.float64 if dtype.is_float else np.int64)
    return [n.constant((s + steps * d).astype(dtype.numpy), dtype)]
