"""Elementwise ATen ops: math, activations, arithmetic, comparisons, logic, where, clamp.

Type promotion is torch's, read off the graph rather than re-implemented: arithmetic computes in
the dtype torch recorded for the node's result (`int + 0.5` is float, `int / int` is float), and
comparisons in `torch.result_type` of their operands. Operands are cast to that dtype and Python
numbers become 0-d constants of it, because the IR's binary ops take equal dtypes.
Compositions (rsqrt, ne, rsub, ...) are the ones the ONNX exporters emit, so both frontends give
the same IR.
"""

from __future__ import annotations

from collections.abc import Callable

from modelc.frontend.fx_ops.dtypes import to_dtype
from modelc.frontend.fx_ops.node import FxNode
from modelc.frontend.fx_ops.registry import converter, register_converter
from modelc.ir import dtypes as D
from modelc.ir.dtypes import DType

# (ATen overload, IR op): one tensor in, one out, computed in the result's dtype.
UNARY = [
    ("aten.relu.default", "relu"),
    ("aten.sigmoid.default", "sigmoid"),
    ("aten.tanh.default", "tanh"),
    ("aten.exp.default", "exp"),
    ("aten.log.default", "log"),
    ("aten.sqrt.default", "sqrt"),
    ("aten.neg.default", "neg"),
    ("aten.abs.default", "abs"),
    ("aten.erf.default", "erf"),
    ("aten.reciprocal.default", "reciprocal"),
    ("aten.floor.default", "floor"),
    ("aten.ceil.default", "ceil"),
    ("aten.round.default", "round"),
    ("aten.sin.default", "sin"),
    ("aten.cos.default", "cos"),
    ("aten.silu.default", "silu"),
    ("aten.hardswish.default", "hard_swish"),
]


def _unary(ir_op: str) -> Callable[[FxNode], str]:
    def convert(n: FxNode) -> str:
        return n.op(ir_op, n.cast(n.tensor("self"), n.out_dtype))

    convert.__name__ = f"convert_{ir_op}"
    return convert


for _name, _op in UNARY:
    register_converter([_name], _unary(_op))


@converter("aten.rsqrt.default")
def rsqrt(n: FxNode) -> str:
    """1 / sqrt(x), as the ONNX exporters spell it."""
    return n.op("reciprocal", n.op("sqrt", n.cast(n.tensor("self"), n.out_dtype)))


@converter("aten.logical_not.default", "aten.bitwise_not.default")
def logical_not(n: FxNode) -> str:
    x = n.tensor("self")
    if n.target.startswith("aten.bitwise") and n.dtype(x) != D.boolean:
        raise n.unsupported("bitwise not of integers is not supported (only of bool tensors)")
    return n.op("not", n.cast(x, D.boolean))


# ---- activations with arguments --------------------------------------------------------------


@converter("aten.gelu.default")
def gelu(n: FxNode) -> str:
    approximate = n.arg("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise n.unsupported(f"approximate={approximate!r} is not 'none' or 'tanh'")
    return n.op("gelu", n.tensor("self"), approximate=approximate)


@converter("aten.hardtanh.default")
def hardtanh(n: FxNode) -> str:
    """Also ReLU6 (torch decomposes it to hardtanh(0, 6)); the ONNX exporters emit Clip."""
    return _clamp(n, n.tensor("self"), n.arg("min_val", -1.0), n.arg("max_val", 1.0))


@converter("aten.hardsigmoid.default")
def hardsigmoid(n: FxNode) -> str:
    return n.op("hard_sigmoid", n.tensor("self"), alpha=1 / 6, beta=0.5)


@converter("aten.leaky_relu.default")
def leaky_relu(n: FxNode) -> str:
    return n.op("leaky_relu", n.tensor("self"), alpha=float(n.arg("negative_slope", 0.01)))


@converter("aten.elu.default")
def elu(n: FxNode) -> str:
    """scale * elu(input_scale * x, alpha); SELU is elu with both scales set."""
    x = n.tensor("self")
    dt = n.dtype(x)
    scale, input_scale = n.arg("scale", 1), n.arg("input_scale", 1)
    if input_scale != 1:
        x = n.op("mul", x, n.scalar(input_scale, dt))
    y = n.op("elu", x, alpha=float(n.arg("alpha", 1.0)))
    return y if scale == 1 else n.op("mul", y, n.scalar(scale, dt))


@converter("aten.log1p.default")
def log1p(n: FxNode) -> str:
    """log(1 + x) (softplus, mish and logsigmoid decompose to it)."""
    x = n.cast(n.tensor("self"), n.out_dtype)
    return n.op("log", n.op("add", x, n.scalar(1, n.dtype(x))))


@converter("aten.expm1.default")
def expm1(n: FxNode) -> str:
    """exp(x) - 1 (celu decomposes to it)."""
    x = n.cast(n.tensor("self"), n.out_dtype)
    return n.op("sub", n.op("exp", x), n.scalar(1, n.dtype(x)))


@converter("aten.sign.default")
def sign(n: FxNode) -> str:
    """(x > 0) - (x < 0) in x's dtype."""
    x = n.tensor("self")
    dt = n.dtype(x)
    zero = n.scalar(0, dt)
    positive = n.cast(n.op("greater", x, zero), dt)
    return n.op("sub", positive, n.cast(n.op("less", x, zero), dt))


# ---- clamp -----------------------------------------------------------------------------------


def _clamp(n: FxNode, x: str, lo: float | None, hi: float | None) -> str:
    """clip for float tensors with number bounds; max / min otherwise (the IR's clip has float
    bounds)."""
    x = n.cast(x, n.out_dtype)
    if n.dtype(x).is_float:
        bounds = {}
        if lo is not None:
            bounds["min"] = float(lo)
        if hi is not None:
            bounds["max"] = float(hi)
        return n.op("clip", x, **bounds)
    if lo is not None:
        x = n.op("max", x, n.scalar(lo, n.dtype(x)))
    if hi is not None:
        x = n.op("min", x, n.scalar(hi, n.dtype(x)))
    return x


@converter("aten.clamp.default")
def clamp(n: FxNode) -> str:
    return _clamp(n, n.tensor("self"), n.arg("min"), n.arg("max"))


@converter("aten.clamp_min.default")
def clamp_min(n: FxNode) -> str:
    return _clamp(n, n.tensor("self"), n.arg("min"), None)


@converter("aten.clamp_max.default")
def clamp_max(n: FxNode) -> str:
    return _clamp(n, n.tensor("self"), None, n.arg("max"))


@converter("aten.clamp.Tensor")
def clamp_tensor(n: FxNode) -> str:
    dt = n.out_dtype
    x = n.cast(n.tensor("self"), dt)
    if n.arg("min") is not None:
        x = n.op("max", x, n.operand("min", dt))
    if n.arg("max") is not None:
        x = n.op("min", x, n.operand("max", dt))
    return x


# ---- arithmetic ------------------------------------------------------------------------------


def _scaled(n: FxNode, name: str, dt: DType) -> str:
    """`other * alpha` of add / sub / rsub (alpha folds into a number operand)."""
    alpha = n.arg("alpha", 1)
    if alpha == 1:
        return n.operand(name, dt)
    if not n.is_tensor(name):
        return n.scalar(n.arg(name) * alpha, dt)
    return n.op("mul", n.operand(name, dt), n.scalar(alpha, dt))


@converter("aten.add.Tensor", "aten.add.Scalar")
def add(n: FxNode) -> str:
    dt = n.out_dtype
    return n.op("add", n.operand("self", dt), _scaled(n, "other", dt))


@converter("aten.sub.Tensor", "aten.sub.Scalar")
def sub(n: FxNode) -> str:
    dt = n.out_dtype
    return n.op("sub", n.operand("self", dt), _scaled(n, "other", dt))


@converter("aten.rsub.Tensor", "aten.rsub.Scalar")
def rsub(n: FxNode) -> str:
    """other - alpha * self."""
    dt = n.out_dtype
    return n.op("sub", n.operand("other", dt), _scaled(n, "self", dt))


@converter("aten.mul.Tensor", "aten.mul.Scalar")
def mul(n: FxNode) -> str:
    dt = n.out_dtype
    return n.op("mul", n.operand("self", dt), n.operand("other", dt))


@converter("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode")
def div(n: FxNode) -> str:
    """True division (ints are cast to the float result first); rounding_mode 'floor' and
    'trunc' round the float quotient. The IR's integer div truncates, which is torch's 'trunc'."""
    dt = n.out_dtype
    mode = n.arg("rounding_mode")
    q = n.op("div", n.operand("self", dt), n.operand("other", dt))
    if mode is None or (mode == "trunc" and not dt.is_float):
        return q
    if not dt.is_float:
        raise n.unsupported("floor division of integer tensors is not supported")
    if mode == "floor":
        return n.op("floor", q)
    if mode == "trunc":
        negative = n.op("less", q, n.scalar(0, dt))
        return n.op("where", negative, n.op("ceil", q), n.op("floor", q))
    raise n.unsupported(f"rounding_mode {mode!r} is not 'floor' or 'trunc'")


@converter("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def pow_(n: FxNode) -> str:
    dt = n.out_dtype
    return n.op("pow", n.operand("self", dt), n.operand("exponent", dt))


@converter("aten.maximum.default")
def maximum(n: FxNode) -> str:
    dt = n.out_dtype
    return n.op("max", n.operand("self", dt), n.operand("other", dt))


@converter("aten.minimum.default")
def minimum(n: FxNode) -> str:
    dt = n.out_dtype
    return n.op("min", n.operand("self", dt), n.operand("other", dt))


# ---- comparisons and logic -------------------------------------------------------------------


def promoted(n: FxNode, *names: str) -> DType:
    """torch.result_type of the named operands (tensors by dtype and rank, numbers by kind)."""
    import torch

    def probe(name: str) -> object:
        v = n.meta(name)
        if isinstance(v, torch.Tensor):
            return torch.empty((1,) * v.dim(), dtype=v.dtype)
        return v

    a, *rest = (probe(x) for x in names)
    dtype = torch.result_type(a, rest[0]) if rest else a.dtype  # type: ignore[union-attr]
    return to_dtype(dtype, n.describe())


COMPARE = [("eq", "equal"), ("lt", "less"), ("le", "less_equal"), ("gt", "greater")]
COMPARE += [("ge", "greater_equal")]


def _compare(ir_op: str) -> Callable[[FxNode], str]:
    def convert(n: FxNode) -> str:
        dt = promoted(n, "self", "other")
        return n.op(ir_op, n.operand("self", dt), n.operand("other", dt))

    convert.__name__ = f"convert_{ir_op}"
    return convert


for _name, _op in COMPARE:
    register_converter([f"aten.{_name}.Tensor", f"aten.{_name}.Scalar"], _compare(_op))


@converter("aten.ne.Tensor", "aten.ne.Scalar")
def ne(n: FxNode) -> str:
    """not(equal), as ONNX has no NotEqual."""
    dt = promoted(n, "self", "other")
    return n.op("not", n.op("equal", n.operand("self", dt), n.operand("other", dt)))


LOGIC = [("logical_and", "and"), ("logical_or", "or"), ("logical_xor", "xor")]


def _logic(ir_op: str) -> Callable[[FxNode], str]:
    def convert(n: FxNode) -> str:
        if n.target.startswith("aten.bitwise") and n.dtype(n.tensor("self")) != D.boolean:
            raise n.unsupported("bitwise ops on integers are not supported (only on bool)")
        return n.op(ir_op, n.operand("self", D.boolean), n.operand("other", D.boolean))

    convert.__name__ = f"convert_{ir_op}"
    return convert


for _name, _op in LOGIC:
    register_converter([f"aten.{_name}.default"], _logic(_op))
    bitwise = _name.replace("logical", "bitwise")
    register_converter([f"aten.{bitwise}.Tensor"], _logic(_op))


@converter("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf")
def where(n: FxNode) -> str:
    dt = n.out_dtype
    cond = n.cast(n.tensor("condition"), D.boolean)
    return n.op("where", cond, n.operand("self", dt), n.operand("other", dt))


@converter("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def masked_fill(n: FxNode) -> str:
    """where(mask, value, self)."""
    dt = n.out_dtype
    mask = n.cast(n.tensor("mask"), D.boolean)
    return n.op("where", mask, n.operand("value", dt), n.cast(n.tensor("self"), dt))
