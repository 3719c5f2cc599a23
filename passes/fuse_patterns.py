"""fuse-patterns: recognize decomposed layer norm, GELU, softmax and attention; make each one op.

Exporters and our own ONNX frontend spell these as chains of small ops (LayerNormalization is
imported as ten nodes; the legacy torch exporter writes GELU as div/erf/add/mul/mul and
attention as matmul/transpose/mul/softmax/matmul). Each chain costs a kernel and a trip
through memory per node; one op lowers to one kernel with a numerically stable loop
(`layer_norm`, `attention` in ir/ops, `gelu` and `softmax`).

The patterns are data (`passes/patterns.py`) in one table, `RULES`; a rule fires only when the
matched nodes other than the root feed nothing outside the match (so fusing never duplicates
work), and its rewrite function checks what a pattern cannot say alone (same axes, trailing
axes, scalar scales, shapes that do not broadcast-grow). Layer norm is three rules that compose
on the next rounds: the normalization itself, then a following multiply by gamma, then an add
of beta, so the same rules cover LayerNorm with and without its affine part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from modelc.ir.graph import Graph, Node
from modelc.passes.patterns import Match, Pattern, all_equal, const, either, near, op, scalar, var
from modelc.passes.registry import Pass, PassContext, register_pass
from modelc.passes.rewrite import (
    Replacement,
    RewriteFn,
    Rewriter,
    Rule,
    apply_rules,
    rule_table,
    select_rules,
)

X = var("x")
ONE, HALF, TWO = const(pred=near(1.0)), const(pred=near(0.5)), const(pred=near(2.0))


def _axes(n: Node) -> tuple[int, ...]:
    return tuple(int(a) for a in n.attrs["axes"])


def _trailing_axis(n: Node, rank: int) -> int | None:
    """The first axis when `n` reduces exactly the trailing axes [a, rank) with keepdims."""
    axes = _axes(n)
    if not axes or not n.attrs["keepdims"] or axes != tuple(range(axes[0], rank)):
        return None
    return axes[0]


def _scalar_value(rw: Rewriter, name: str) -> float:
    arr = rw.constant(name)
    assert arr is not None
    return float(arr.reshape(-1)[0])


def _short(value: float, dtype: np.dtype) -> float:
    """`value` as the shortest decimal that rounds to the same `dtype` number: an f32 epsilon
    of 1e-5 prints as 1e-05, not 9.999999747378752e-06, and kernels see the same bits."""
    return float(str(np.asarray(value, dtype)[()]))


# ---- layer norm ----------------------------------------------------------------------------------

_MEAN = op("reduce_mean", X, name="mean")
_CENTERED = op("sub", X, _MEAN, name="d")
_SQUARE = either(op("mul", _CENTERED, _CENTERED), op("pow", _CENTERED, const(pred=all_equal(2))))
_STD = op("sqrt", op("add", op("reduce_mean", _SQUARE, name="var"), const("eps", scalar)))
LAYER_NORM = either(
    op("div", _CENTERED, _STD), op("mul", _CENTERED, op("reciprocal", _STD)), name="norm"
)


def _layer_norm(m: Match, rw: Rewriter) -> Replacement | None:
    t = rw.type(m["x"])
    axis = _trailing_axis(m.node("mean"), t.rank)
    if axis is None or _trailing_axis(m.node("var"), t.rank) != axis or not t.dtype.is_float:
        return None
    eps = _short(_scalar_value(rw, m["eps"]), t.dtype.numpy)
    if not eps >= 0:
        return None
    return rw.add_node("layer_norm", [m["x"]], {"axis": axis, "epsilon": eps})


def _affine_operand(m: Match, rw: Rewriter, name: str) -> str | None:
    """The gamma/beta operand of the root, shaped to broadcast into the normalized dims, or
    None when it does not fit (broadcasts over other dims, or grows the output)."""
    ln = m.node("ln")
    x_t = rw.type(ln.inputs[0])
    norm = x_t.shape[int(ln.attrs["axis"]) :]
    v = m[name]
    t = rw.type(v)
    if t.dtype != x_t.dtype or m.root.output.type.shape != x_t.shape:
        return None
    shape = t.shape
    while len(shape) > len(norm) and shape[0] == 1:
        shape = shape[1:]
    if len(shape) > len(norm) or _broadcast(shape, norm) != norm:
        return None
    return v if shape == t.shape else rw.add_node("reshape", [v], {"shape": shape})


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


def _layer_norm_scale(m: Match, rw: Rewriter) -> Replacement | None:
    ln = m.node("ln")
    gamma = _affine_operand(m, rw, "g")
    if gamma is None:
        return None
    return rw.add_node("layer_norm", [ln.inputs[0], gamma], ln.attrs)


def _layer_norm_shift(m: Match, rw: Rewriter) -> Replacement | None:
    ln = m.node("ln")
    beta = _affine_operand(m, rw, "b")
    if beta is None:
        return None
    gamma = ln.inputs[1] if len(ln.inputs) > 1 else ""
    return rw.add_node("layer_norm", [ln.inputs[0], gamma, beta], ln.attrs)


_BARE_LN = op("layer_norm", X, name="ln")
_SCALED_LN = op("layer_norm", X, var("g0"), name="ln")


# ---- GELU ----------------------------------------------------------------------------------------


def _gelu_forms(factor: Pattern) -> Pattern:
    """0.5 * x * factor in the associations exporters write (mul is commutative, so each
    form also covers its mirror images)."""
    return either(
        op("mul", op("mul", X, factor), HALF),
        op("mul", op("mul", X, HALF), factor),
        op("mul", X, op("mul", factor, HALF)),
        op("div", op("mul", X, factor), TWO),
    )


_ERF_ARG = either(
    op("div", X, const(pred=near(math.sqrt(2.0)))),
    op("mul", X, const(pred=near(1 / math.sqrt(2.0)))),
)
GELU_ERF = _gelu_forms(op("add", op("erf", _ERF_ARG), ONE))

_CUBE = either(op("pow", X, const(pred=near(3.0))), op("mul", X, op("mul", X, X)))
_TANH_ARG = op(
    "mul",
    op("add", X, op("mul", _CUBE, const(pred=near(0.044715)))),
    const(pred=near(math.sqrt(2 / math.pi))),
)
GELU_TANH = _gelu_forms(op("add", op("tanh", _TANH_ARG), ONE))


def _gelu(approximate: str) -> RewriteFn:
    def rewrite(m: Match, rw: Rewriter) -> Replacement | None:
        t = rw.type(m["x"])
        if t.shape != m.root.output.type.shape or not t.dtype.is_float:
            return None
        return rw.add_node("gelu", [m["x"]], {"approximate": approximate})

    return rewrite


# ---- softmax -------------------------------------------------------------------------------------

_EXP = either(
    op("exp", op("sub", X, op("reduce_max", X, name="max"))),
    op("exp", X),
    name="e",
)
_SUM = op("reduce_sum", _EXP, name="sum")
SOFTMAX = either(op("div", _EXP, _SUM), op("mul", _EXP, op("reciprocal", _SUM)))


def _softmax(m: Match, rw: Rewriter) -> Replacement | None:
    t = rw.type(m["x"])
    axes = _axes(m.node("sum"))
    if len(axes) != 1 or not m.node("sum").attrs["keepdims"] or not t.dtype.is_float:
        return None
    if "max" in m.nodes:
        mx = m.node("max")
        if _axes(mx) != axes or not mx.attrs["keepdims"]:
            return None
    if t.shape != m.root.output.type.shape:
        return None
    return rw.add_node("softmax", [m["x"]], {"axis": axes[0]})


# ---- attention -----------------------------------------------------------------------------------


def _scaled(p: Pattern, tag: str) -> Pattern:
    """p, p * scalar or p / scalar (the scaled forms first: a bare `p` that is a variable
    would otherwise swallow the scale)."""
    return either(
        op("mul", p, const(f"{tag}_mul", scalar)),
        op("div", p, const(f"{tag}_div", scalar)),
        p,
    )


# k^T as exporters write it: a transpose (possibly composed with others by canonicalize), a
# reshape of one that only regroups the batch dims (torch's dynamo exporter), or any value.
_K_T = either(
    op("reshape", op("transpose", var("k0"), name="kt_transpose"), name="kt_reshape"),
    op("transpose", var("k0"), name="kt_transpose"),
    var("kt"),
)
_SCORES = _scaled(op("matmul", _scaled(var("q"), "q"), _scaled(_K_T, "k"), name="qk"), "s")
_MASKED = either(op("add", _SCORES, var("mask"), name="masked"), _SCORES)
ATTENTION = op("matmul", op("softmax", _MASKED, name="softmax"), var("v"))


def _swap_last_two(perm: tuple[int, ...]) -> tuple[int, ...]:
    return (*perm[:-2], perm[-1], perm[-2])


def _transpose(rw: Rewriter, x: str, perm: tuple[int, ...]) -> str:
    if perm == tuple(range(len(perm))):
        return x
    return rw.add_node("transpose", [x], {"perm": perm})


def _attention_key(m: Match, rw: Rewriter) -> str | None:
    """k as [*B, Sk, D], from the k^T [*B, D, Sk] the pattern matched: the matched transpose
    with its last two output dims swapped back (often the identity, so k is the transpose's
    input), under the same regrouping reshape; or an explicit transpose of any other k^T."""
    if "kt" in m.values:
        rank = rw.type(m["kt"]).rank
        return _transpose(rw, m["kt"], _swap_last_two(tuple(range(rank))))
    t = m.node("kt_transpose")
    perm = _swap_last_two(tuple(int(p) for p in t.attrs["perm"]))
    if "kt_reshape" not in m.nodes:
        return _transpose(rw, m["k0"], perm)
    kt = m.node("kt_reshape").output.type.shape  # [*B, D, Sk]
    if t.output.type.rank < 2 or kt[-2:] != t.output.type.shape[-2:]:
        return None  # the reshape moved elements across the last two dims
    k = _transpose(rw, m["k0"], perm)
    return rw.add_node("reshape", [k], {"shape": (*kt[:-2], kt[-1], kt[-2])})


def _attention(m: Match, rw: Rewriter) -> Replacement | None:
    qk = m.node("qk").output.type
    q, v = rw.type(m["q"]), rw.type(m["v"])
    if qk.rank < 2 or q.rank != qk.rank or v.rank != qk.rank or not qk.dtype.is_float:
        return None  # matmul's 1-D promotion: not attention's [..., S, D] operands
    if int(m.node("softmax").attrs["axis"]) != qk.rank - 1:
        return None
    batch = qk.shape[:-2]
    if q.shape[:-2] != batch or v.shape[:-2] != batch or v.shape[-2] != qk.shape[-1]:
        return None
    if "masked" in m.nodes and m.node("masked").output.type.shape != qk.shape:
        return None  # the mask broadcasts the scores to a bigger shape
    scale = 1.0
    for tag in ("q", "k", "s"):
        if f"{tag}_mul" in m.values:
            scale *= _scalar_value(rw, m[f"{tag}_mul"])
        if f"{tag}_div" in m.values:
            scale /= _scalar_value(rw, m[f"{tag}_div"])
    k = _attention_key(m, rw)
    if k is None or rw.type(k).shape[:-2] != batch:
        return None
    inputs = [m["q"], k, m["v"]] + ([m["mask"]] if "mask" in m.values else [])
    return rw.add_node("attention", inputs, {"scale": _short(scale, qk.dtype.numpy)})


RULES: tuple[Rule, ...] = (
    Rule(
        "layer-norm",
        LAYER_NORM,
        _layer_norm,
        "(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) over trailing axes -> layer_norm",
        exclusive=True,
    ),
    Rule(
        "layer-norm-scale",
        op("mul", _BARE_LN, var("g")),
        _layer_norm_scale,
        "layer_norm(x) * gamma (gamma over the normalized dims) -> layer_norm(x, gamma)",
        exclusive=True,
    ),
    Rule(
        "layer-norm-shift",
        op("add", either(_BARE_LN, _SCALED_LN), var("b")),
        _layer_norm_shift,
        "layer_norm(x, gamma?) + beta -> layer_norm(x, gamma?, beta)",
        exclusive=True,
    ),
    Rule(
        "gelu-erf",
        GELU_ERF,
        _gelu("none"),
        "0.5 * x * (1 + erf(x / sqrt(2))) in any association -> gelu",
        exclusive=True,
    ),
    Rule(
        "gelu-tanh",
        GELU_TANH,
        _gelu("tanh"),
        "0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> gelu{approximate=tanh}",
        exclusive=True,
    ),
    Rule(
        "softmax",
        SOFTMAX,
        _softmax,
        "exp(x [- max(x)]) / sum(exp(x [- max(x)])) along one axis -> softmax",
        exclusive=True,
    ),
    Rule(
        "attention",
        ATTENTION,
        _attention,
        "softmax(scale * q @ k^T [+ mask]) @ v (scales on q, k^T or the scores) -> attention",
        exclusive=True,
    ),
)


@register_pass
@dataclass(frozen=True)
class FusePatterns(Pass):
    name = "fuse-patterns"
    # Rule names to leave out, separated by ',' or '+' (e.g. `fuse-patterns{disable=attention}`).
    disable: str = ""

    def __post_init__(self) -> None:
        select_rules(RULES, self.disable)

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        out, fired = apply_rules(graph, select_rules(RULES, self.disable))
        if fired:
            ctx.report(self.name, **fired)
        return out


__doc__ = (__doc__ or "") + "\nRules:\n\n" + rule_table(RULES)
