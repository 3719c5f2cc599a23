"""Mod and the elementwise predicates Sign, IsNaN and IsInf.

Mod is the IR's `mod`. The others are compositions of existing elementwise ops, so they fuse like
any elementwise chain and need no kernel of their own:

- IsNaN(x) = not(x == x) (NaN is the only value unequal to itself);
- IsInf(x) = (x == +inf) or (x == -inf), each side as detect_positive / detect_negative ask;
- Sign(x) = where(x > 0, 1, where(x < 0, -1, x * 0)): the last branch keeps 0, -0 and NaN
  (NaN * 0 is NaN, as numpy's sign gives).
"""

from __future__ import annotations

import math

import numpy as np

from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter
from modelc.ir import dtypes as D


@converter("Mod", since=10)
def mod(n: OnnxNode) -> list[str]:
    """fmod=1: C's fmod (the dividend's sign); fmod=0 (the default): Python's remainder (the
    divisor's sign), for floats too as the ONNX reference computes it."""
    return [n.op("mod", n.input(0), n.input(1), fmod=bool(n.attr("fmod", 0)))]


@converter("Sign", since=9)
def sign(n: OnnxNode) -> list[str]:
    x = n.input(0)
    if n.dtype(0).kind == "uint":
        return [n.op("cast", n.op("greater", x, n.scalar(0, like=x)), to=n.dtype(0))]
    zero = n.scalar(0, like=x)
    tail = n.op("where", n.op("less", x, zero), n.scalar(-1, like=x), n.op("mul", x, zero))
    return [n.op("where", n.op("greater", x, zero), n.scalar(1, like=x), tail)]


@converter("IsNaN", since=9)
def is_nan(n: OnnxNode) -> list[str]:
    x = n.input(0)
    if not n.dtype(0).is_float:
        return [n.constant(_falses(n), D.boolean)]
    return [n.op("not", n.op("equal", x, x))]


@converter("IsInf", since=10)
def is_inf(n: OnnxNode) -> list[str]:
    x = n.input(0)
    sides_wanted = (("detect_positive", math.inf), ("detect_negative", -math.inf))
    wanted = [v for attr, v in sides_wanted if n.attr(attr, 1)]
    if not wanted or not n.dtype(0).is_float:
        return [n.constant(_falses(n), D.boolean)]
    sides = [n.op("equal", x, n.scalar(v, like=x)) for v in wanted]
    return [sides[0] if len(sides) == 1 else n.op("or", *sides)]


def _falses(n: OnnxNode) -> np.ndarray:
    """Integers are never NaN or infinite: a constant all-false mask of the input's shape."""
    return np.zeros(n.shape(0), dtype=np.bool_)
