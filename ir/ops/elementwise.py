"""Elementwise ops: unary activations and math, binary arithmetic with broadcasting,
comparisons, logic and `where`.

Each op is a row of a table: a numpy reference and a scalar loop-IR expression. The scalar
expression is both the op's lowering (through `elementwise_kernel`) and what fusion composes
when it merges an elementwise chain into one kernel, so a new activation is one table row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from modelc.errors import ShapeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType, boolean, i64
from modelc.ir.loop import Expr
from modelc.ir.opdef import (
    BROADCAST,
    COMMUTATIVE,
    ELEMENTWISE,
    AttrSpec,
    LowerRequest,
    OpDef,
    register_op,
)
from modelc.ir.ops.common import broadcast_shapes, elementwise_kernel, same_dtype
from modelc.ir.types import TensorType

Scalar = Callable[[Sequence[Expr], Attrs, DType], Expr]
NpFn = Callable[..., np.ndarray]


def _c(v: float | int, dt: DType) -> Expr:
    """A constant in the operand's dtype."""
    if dt.is_float:
        return L.Const(float(v), dt)
    return L.Const(int(v), dt)


def _lower_with(scalar: Scalar) -> Callable[[LowerRequest], L.Kernel]:
    def lower(req: LowerRequest) -> L.Kernel:
        dt = req.in_types[0].dtype
        return elementwise_kernel(req, lambda xs: scalar(xs, req.node.attrs, dt))

    return lower


# ---- unary -----------------------------------------------------------------------------------


def _infer_unary(types: Sequence[TensorType | None], attrs: Attrs) -> list[TensorType]:
    (t,) = types
    assert t is not None
    return [TensorType(t.shape, t.dtype)]


def _unary(
    name: str,
    ref: Callable[[np.ndarray, Attrs], np.ndarray],
    scalar: Callable[[Expr, Attrs, DType], Expr],
    attrs: dict[str, AttrSpec] | None = None,
    doc: str = "",
) -> None:
    def reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
        x = xs[0]
        assert x is not None
        with np.errstate(all="ignore"):
            return [np.asarray(ref(x, a)).astype(x.dtype, copy=False)]

    def sc(xs: Sequence[Expr], a: Attrs, dt: DType) -> Expr:
        return scalar(xs[0], a, dt)

    register_op(
        OpDef(
            name=name,
            infer=_infer_unary,
            reference=reference,
            attrs=attrs or {},
            traits=frozenset({ELEMENTWISE}),
            lower=_lower_with(sc),
            scalar=sc,
            doc=doc,
        )
    )


def _f(fn: NpFn) -> Callable[[np.ndarray, Attrs], np.ndarray]:
    return lambda x, a: fn(x)


def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    return (1 / (1 + np.exp(-x))).astype(x.dtype)


def _erf_np(x: np.ndarray) -> np.ndarray:
    v = np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)) if x.size else x
    return np.asarray(v).astype(x.dtype)


def _gelu_np(x: np.ndarray, a: Attrs) -> np.ndarray:
    xd = x.astype(np.float64)
    if a["approximate"] == "tanh":
        y = 0.5 * xd * (1 + np.tanh(math.sqrt(2 / math.pi) * (xd + 0.044715 * xd**3)))
    else:
        y = 0.5 * xd * (1 + _erf_np(xd / math.sqrt(2)))
    return y.astype(x.dtype)


def _gelu(x: Expr, a: Attrs, dt: DType) -> Expr:
    half, one = _c(0.5, dt), _c(1, dt)
    if a["approximate"] == "tanh":
        inner = _c(math.sqrt(2 / math.pi), dt) * (x + _c(0.044715, dt) * x * x * x)
        return half * x * (one + L.call("tanh", inner))
    return half * x * (one + L.call("erf", x * _c(1 / math.sqrt(2), dt)))


def _clip(x: Expr, a: Attrs, dt: DType) -> Expr:
    out = x
    if a["min"] != -math.inf:
        out = L.maximum(out, _c(a["min"], dt))
    if a["max"] != math.inf:
        out = L.minimum(out, _c(a["max"], dt))
    return out


def _hard_sigmoid(x: Expr, a: Attrs, dt: DType) -> Expr:
    y = _c(a["alpha"], dt) * x + _c(a["beta"], dt)
    return L.minimum(L.maximum(y, _c(0, dt)), _c(1, dt))


def _round_np(x: np.ndarray) -> np.ndarray:
    return np.round(x)  # numpy rounds half to even, as ONNX Round does


_unary("relu", _f(lambda x: np.maximum(x, 0)), lambda x, a, dt: L.maximum(x, _c(0, dt)))
_unary("sigmoid", _f(_sigmoid_np), lambda x, a, dt: L.call("sigmoid", x))
_unary("tanh", _f(np.tanh), lambda x, a, dt: L.call("tanh", x))
_unary("exp", _f(np.exp), lambda x, a, dt: L.call("exp", x))
_unary("log", _f(np.log), lambda x, a, dt: L.call("log", x))
_unary("sqrt", _f(np.sqrt), lambda x, a, dt: L.call("sqrt", x))
_unary("neg", _f(np.negative), lambda x, a, dt: -x)
_unary("abs", _f(np.abs), lambda x, a, dt: L.call("abs", x))
_unary("erf", _f(_erf_np), lambda x, a, dt: L.call("erf", x))
_unary("reciprocal", _f(lambda x: 1 / x), lambda x, a, dt: _c(1, dt) / x)
_unary("floor", _f(np.floor), lambda x, a, dt: L.call("floor", x))
_unary("ceil", _f(np.ceil), lambda x, a, dt: L.call("ceil", x))
_unary("round", _f(_round_np), lambda x, a, dt: L.call("round", x))
_unary("sin", _f(np.sin), lambda x, a, dt: L.call("sin", x))
_unary("cos", _f(np.cos), lambda x, a, dt: L.call("cos", x))
_unary("copy", _f(np.copy), lambda x, a, dt: x, doc="Materialize a value in a new buffer.")
_unary(
    "softplus",
    _f(lambda x: np.log1p(np.exp(x))),
    lambda x, a, dt: L.call("log", _c(1, dt) + L.call("exp", x)),
)
_unary(
    "silu",
    _f(lambda x: x * _sigmoid_np(x)),
    lambda x, a, dt: x * L.call("sigmoid", x),
)
_unary(
    "leaky_relu",
    lambda x, a: np.where(x < 0, x * np.asarray(a["alpha"], x.dtype), x),
    lambda x, a, dt: L.select(L.lt(x, _c(0, dt)), x * _c(a["alpha"], dt), x),
    {"alpha": AttrSpec("float", 0.01)},
)
_unary(
    "elu",
    lambda x, a: np.where(x < 0, np.asarray(a["alpha"], x.dtype) * (np.exp(x) - 1), x),
    lambda x, a, dt: L.select(
        L.lt(x, _c(0, dt)), _c(a["alpha"], dt) * (L.call("exp", x) - _c(1, dt)), x
    ),
    {"alpha": AttrSpec("float", 1.0)},
)
_unary(
    "clip",
    lambda x, a: np.clip(
        x, np.asarray(a["min"]).astype(x.dtype), np.asarray(a["max"]).astype(x.dtype)
    ),
    _clip,
    {"min": AttrSpec("float", -math.inf), "max": AttrSpec("float", math.inf)},
)
_unary(
    "hard_sigmoid",
    lambda x, a: np.clip(
        np.asarray(a["alpha"], x.dtype) * x + np.asarray(a["beta"], x.dtype), 0, 1
    ),
    _hard_sigmoid,
    {"alpha": AttrSpec("float", 0.2), "beta": AttrSpec("float", 0.5)},
)
_unary(
    "hard_swish",
    lambda x, a: x * np.clip(x * np.asarray(1 / 6, x.dtype) + np.asarray(0.5, x.dtype), 0, 1),
    lambda x, a, dt: x * _hard_sigmoid(x, Attrs(alpha=1 / 6, beta=0.5), dt),
)
_unary("gelu", _gelu_np, _gelu, {"approximate": AttrSpec("str", "none")})


# ---- cast --------------------------------------------------------------------------------------


def _infer_cast(types: Sequence[TensorType | None], attrs: Attrs) -> list[TensorType]:
    (t,) = types
    assert t is not None
    return [TensorType(t.shape, attrs["to"])]


def _cast_np(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    assert x is not None
    to: DType = a["to"]
    with np.errstate(all="ignore"):
        if to.is_int and x.dtype.kind == "f":
            x = np.trunc(x)  # C conversion truncates toward zero
        if to.bits == 4:
            # Sub-byte integers wrap like every narrowing integer conversion (two's complement
            # for i4): -9 -> 7, 16 -> 0. NaN and values outside int64 are undefined (here 0).
            v = np.where(np.isfinite(x), x, 0).astype(np.int64) if x.dtype.kind == "f" else x
            v = np.asarray(v).astype(np.int64) & 15
            return [(v if to.kind == "uint" else (v ^ 8) - 8).astype(to.numpy)]
        return [x.astype(to.numpy)]


def _cast_scalar(to: DType, x: Expr) -> Expr:
    """The loop-IR conversion: a C cast, except into 4-bit integers (one per byte in memory),
    which keeps the low 4 bits, sign-extended for i4, exactly as the reference does."""
    if to.bits != 4 or x.dtype == to:
        return L.cast(to, x)
    low = L.BinOp("&", L.cast(i64, x), L.Const(15, i64))
    if to.kind == "int":
        low = L.sub(L.BinOp("^", low, L.Const(8, i64)), L.Const(8, i64))
    return L.cast(to, low)


register_op(
    OpDef(
        name="cast",
        infer=_infer_cast,
        reference=_cast_np,
        attrs={"to": AttrSpec("dtype")},
        traits=frozenset({ELEMENTWISE}),
        lower=lambda req: elementwise_kernel(
            req, lambda xs: _cast_scalar(req.node.attrs["to"], xs[0])
        ),
        scalar=lambda xs, a, dt: _cast_scalar(a["to"], xs[0]),
        doc="Element type conversion with C semantics: float -> int truncates toward zero, "
        "narrowing integer conversions wrap (also into i4 / u4: -9 -> 7 as i4); float -> int "
        "outside the target's range is undefined, as in ONNX.",
    )
)


# ---- binary with broadcasting ------------------------------------------------------------------


def _infer_binary(result_bool: bool) -> Callable[..., list[TensorType]]:
    def infer(types: Sequence[TensorType | None], attrs: Attrs) -> list[TensorType]:
        ts = [t for t in types if t is not None]
        dt = same_dtype(ts, "binary op")
        shape = broadcast_shapes(*[t.shape for t in ts])
        return [TensorType(shape, boolean if result_bool else dt)]

    return infer


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C integer division: truncate toward zero (numpy's // floors)."""
    with np.errstate(all="ignore"):
        q = np.floor_divide(a, np.where(b == 0, 1, b))
        fix = (q < 0) & (q * b != a)
        return (q + fix).astype(a.dtype)


def _div_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        return _int_div(a, b)
    return a / b


def _binary(
    name: str,
    np_fn: NpFn,
    scalar: Callable[[Expr, Expr, DType], Expr],
    *,
    commutative: bool = False,
    result_bool: bool = False,
) -> None:
    def reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
        x, y = xs
        assert x is not None and y is not None
        with np.errstate(all="ignore"):
            out = np.asarray(np_fn(x, y))
        return [out.astype(np.bool_ if result_bool else x.dtype, copy=False)]

    def sc(xs: Sequence[Expr], a: Attrs, dt: DType) -> Expr:
        return scalar(xs[0], xs[1], dt)

    traits = {ELEMENTWISE, BROADCAST} | ({COMMUTATIVE} if commutative else set())
    register_op(
        OpDef(
            name=name,
            infer=_infer_binary(result_bool),
            reference=reference,
            num_inputs=(2, 2),
            traits=frozenset(traits),
            lower=_lower_with(sc),
            scalar=sc,
        )
    )


_binary("add", np.add, lambda a, b, dt: L.BinOp("+", a, b), commutative=True)
_binary("sub", np.subtract, lambda a, b, dt: L.BinOp("-", a, b))
_binary("mul", np.multiply, lambda a, b, dt: L.BinOp("*", a, b), commutative=True)
_binary("div", _div_np, lambda a, b, dt: L.BinOp("/", a, b))
_binary("pow", np.power, lambda a, b, dt: L.call("pow", a, b))
_binary("max", np.maximum, lambda a, b, dt: L.maximum(a, b), commutative=True)
_binary("min", np.minimum, lambda a, b, dt: L.minimum(a, b), commutative=True)
_binary("equal", np.equal, lambda a, b, dt: L.eq(a, b), commutative=True, result_bool=True)
_binary("less", np.less, lambda a, b, dt: L.lt(a, b), result_bool=True)
_binary("less_equal", np.less_equal, lambda a, b, dt: L.le(a, b), result_bool=True)
_binary("greater", np.greater, lambda a, b, dt: L.gt(a, b), result_bool=True)
_binary("greater_equal", np.greater_equal, lambda a, b, dt: L.ge(a, b), result_bool=True)
_binary("and", np.logical_and, lambda a, b, dt: L.BinOp("&&", a, b), commutative=True)
_binary("or", np.logical_or, lambda a, b, dt: L.BinOp("||", a, b), commutative=True)
_binary("xor", np.logical_xor, lambda a, b, dt: L.BinOp("!=", a, b), commutative=True)
_unary("not", _f(np.logical_not), lambda x, a, dt: L.UnOp("!", x))


# ---- where -------------------------------------------------------------------------------------


def _infer_where(types: Sequence[TensorType | None], attrs: Attrs) -> list[TensorType]:
    c, x, y = types
    assert c is not None and x is not None and y is not None
    if c.dtype != boolean:
        raise ShapeError(f"where: condition must be bool, got {c.dtype}")
    dt = same_dtype([x, y], "where")
    return [TensorType(broadcast_shapes(c.shape, x.shape, y.shape), dt)]


register_op(
    OpDef(
        name="where",
        infer=_infer_where,
        reference=lambda xs, a: [np.where(xs[0], xs[1], xs[2])],
        num_inputs=(3, 3),
        traits=frozenset({ELEMENTWISE, BROADCAST}),
        lower=lambda req: elementwise_kernel(req, lambda xs: L.select(xs[0], xs[1], xs[2])),
        scalar=lambda xs, a, dt: L.select(xs[0], xs[1], xs[2]),
    )
)
