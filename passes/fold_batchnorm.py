"""fold-batchnorm: fold inference batch norm, and constant per-channel scales and shifts, into
the weights and bias of the conv or matmul (Gemm / Linear) before them.

    batch_norm(conv(x, W, b), s, t, mean, var)  ->  conv(x, W * k, (b - mean) * k + t)
        with k = s / sqrt(var + eps) per output channel (the bias is created when absent)
    conv(x, W, b) * c  ->  conv(x, W * c, b * c)      conv(x, W, b) + c  ->  conv(x, W, b + c)
    (x @ W + b) * c    ->  x @ (W * c) + b * c        (x @ W + b) + c    ->  x @ W + (b + c)

A BN that a model was exported with (torch `do_constant_folding=False`, training checkpoints,
hand-built graphs) costs a full pass over every activation; folded, it costs nothing. Rules
apply only when the weights and the BN/scale parameters are constants and the conv/matmul
output feeds nothing else (otherwise the other reader would see the scaled result). A scale or
shift folds only when it is per output channel: constant along every other dim, and not
growing the output by broadcasting. For matmul that means along the last dim, and batch_norm
(channels on axis 1) folds into a matmul only when its output is 2-D [batch, features].

The folded constants are computed in float64 and rounded once to the weight dtype, so the
result is within float32 rounding of the unfused graph even for tiny running variances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelc.ir.graph import Graph, Node
from modelc.passes.patterns import Match, const, either, op, var
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

X, W, B, C = var("x"), const("w"), const("b"), const("c")
CONV = either(op("conv", X, W, B, name="conv"), op("conv", X, W, name="conv"))
MATMUL = op("matmul", X, W, name="mm")
LINEAR = either(op("add", MATMUL, B, name="bias_add"), MATMUL)
BN_PARAMS = (const("scale"), const("shift"), const("mean"), const("var"))


def _channels(m: Match, rw: Rewriter, anchor: Node) -> tuple[int, int] | None:
    """(channel dim, channel count) of the conv / matmul output, or None when its weight is
    not a float constant the scale can fold into."""
    w = rw.constant(m["w"])
    out = anchor.output.type
    if w is None or w.dtype.kind != "f" or not out.dtype.is_float:
        return None
    if anchor.op == "conv":
        # a channels-last conv (layout pass) packs its weight [*K, C/g, M]: not folded here
        return (1, out.shape[1]) if anchor.attrs.get("layout", "nchw") == "nchw" else None
    if w.ndim < 2 or out.rank < 2:  # 1-D W drops the feature dim
        return None
    return out.rank - 1, out.shape[-1]


def _per_channel(arr: np.ndarray, rank: int, dim: int, count: int) -> np.ndarray | None:
    """`arr` (broadcast against a rank-`rank` output) as a vector over `dim`, or None when it
    varies along any other dim or has more dims than the output."""
    if arr.ndim > rank:
        return None
    shape = (1,) * (rank - arr.ndim) + arr.shape
    if any(s != 1 for d, s in enumerate(shape) if d != dim) or shape[dim] not in (1, count):
        return None
    return np.broadcast_to(arr.reshape(-1).astype(np.float64), (count,))


def _anchor(m: Match) -> Node:
    return m.node("conv") if "conv" in m.nodes else m.node("mm")


def _bias(m: Match, rw: Rewriter, count: int) -> np.ndarray | None:
    """The existing bias as a float64 vector over the channels (zeros when there is none)."""
    if "b" not in m.values:
        return np.zeros(count)
    b = rw.constant(m["b"])
    assert b is not None
    anchor = _anchor(m)
    if anchor.op == "conv":
        return b.astype(np.float64)
    if m.node("bias_add").output.type.shape != anchor.output.type.shape:
        return None  # the bias broadcasts the product to a bigger shape
    return _per_channel(b, anchor.output.type.rank, anchor.output.type.rank - 1, count)


def _emit(
    m: Match, rw: Rewriter, scale: np.ndarray | None, bias: np.ndarray | None, has_bias: bool
) -> Replacement | None:
    """The anchor with weights scaled per channel by `scale` (None: unchanged) and the bias
    vector `bias` (added after a matmul, a conv input otherwise)."""
    anchor = _anchor(m)
    w = rw.constant(m["w"])
    assert w is not None
    b_hint = m.get("b") or f"{m['w']}_bias"
    w_name = m["w"]
    if scale is not None:
        if anchor.op == "conv":
            folded = w.astype(np.float64) * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        else:
            folded = w.astype(np.float64) * scale
        w_name = rw.add_const(folded, m["w"], dtype=w.dtype)
    loc = anchor.loc
    if anchor.op == "conv":
        inputs = [m["x"], w_name]
        if has_bias and bias is not None:
            inputs.append(rw.add_const(bias, b_hint, dtype=w.dtype))
        return rw.add_node("conv", inputs, anchor.attrs, loc=loc)
    y = rw.add_node("matmul", [m["x"], w_name], hint=anchor.output.name, loc=loc)
    if not has_bias or bias is None:
        return y
    return rw.add_node("add", [y, rw.add_const(bias, b_hint, dtype=w.dtype)], loc=loc)


def _fold_batch_norm(m: Match, rw: Rewriter) -> Replacement | None:
    anchor = _anchor(m)
    geo = _channels(m, rw, anchor)
    if geo is None:
        return None
    count = geo[1]
    if anchor.op == "matmul" and anchor.output.type.rank != 2:
        return None  # batch_norm normalizes axis 1, the features only of a 2-D output
    params = [rw.constant(m[k]) for k in ("scale", "shift", "mean", "var")]
    if any(p is None or p.shape != (count,) for p in params):
        return None
    s, t, mean, var_ = (np.asarray(p, np.float64) for p in params)
    k = s / np.sqrt(var_ + float(m.root.attrs["epsilon"]))
    bias = _bias(m, rw, count)
    if bias is None:
        return None
    return _emit(m, rw, k, (bias - mean) * k + t, has_bias=True)


def _fold_scale(invert: bool) -> RewriteFn:
    def rewrite(m: Match, rw: Rewriter) -> Replacement | None:
        anchor = _anchor(m)
        geo = _channels(m, rw, anchor)
        c = rw.constant(m["c"])
        if geo is None or c is None or m.root.output.type.shape != anchor.output.type.shape:
            return None
        vec = _per_channel(c, anchor.output.type.rank, *geo)
        if vec is None or (invert and not np.all(vec != 0)):
            return None
        k = 1.0 / vec if invert else vec
        bias = _bias(m, rw, geo[1])
        if bias is None:
            return None
        return _emit(m, rw, k, bias * k, has_bias="b" in m.values)

    return rewrite


def _fold_shift(negate: bool) -> RewriteFn:
    def rewrite(m: Match, rw: Rewriter) -> Replacement | None:
        anchor = _anchor(m)
        geo = _channels(m, rw, anchor)
        c = rw.constant(m["c"])
        if geo is None or c is None or m.root.output.type.shape != anchor.output.type.shape:
            return None
        if anchor.op == "matmul" and "b" not in m.values and not negate:
            return None  # matmul + c is already the linear form
        vec = _per_channel(c, anchor.output.type.rank, *geo)
        bias = _bias(m, rw, geo[1])
        if vec is None or bias is None:
            return None
        return _emit(m, rw, None, bias - vec if negate else bias + vec, has_bias=True)

    return rewrite


RULES: tuple[Rule, ...] = (
    Rule(
        "conv-batchnorm",
        op("batch_norm", CONV, *BN_PARAMS),
        _fold_batch_norm,
        "batch_norm(conv(x, W, b?)) -> conv(x, W*k, (b-mean)*k + shift), k = scale/sqrt(var+eps)",
        exclusive=True,
    ),
    Rule(
        "linear-batchnorm",
        op("batch_norm", LINEAR, *BN_PARAMS),
        _fold_batch_norm,
        "batch_norm(x @ W [+ b]) with a 2-D output -> x @ (W*k) + ((b-mean)*k + shift)",
        exclusive=True,
    ),
    Rule("conv-mul", op("mul", CONV, C), _fold_scale(False), "conv * c -> conv(W*c, b*c)", True),
    Rule("conv-div", op("div", CONV, C), _fold_scale(True), "conv / c -> conv(W/c, b/c)", True),
    Rule("conv-add", op("add", CONV, C), _fold_shift(False), "conv + c -> conv(W, b+c)", True),
    Rule("conv-sub", op("sub", CONV, C), _fold_shift(True), "conv - c -> conv(W, b-c)", True),
    Rule(
        "linear-mul",
        op("mul", LINEAR, C),
        _fold_scale(False),
        "(x @ W [+ b]) * c -> x @ (W*c) [+ b*c]",
        True,
    ),
    Rule(
        "linear-div",
        op("div", LINEAR, C),
        _fold_scale(True),
        "(x @ W [+ b]) / c -> x @ (W/c) [+ b/c]",
        True,
    ),
    Rule(
        "linear-add",
        op("add", op("add", MATMUL, B, name="bias_add"), C),
        _fold_shift(False),
        "(x @ W + b) + c -> x @ W + (b+c)",
        True,
    ),
    Rule(
        "linear-sub",
        op("sub", LINEAR, C),
        _fold_shift(True),
        "(x @ W [+ b]) - c -> x @ W + (b-c)",
        True,
    ),
)


@register_pass
@dataclass(frozen=True)
class FoldBatchNorm(Pass):
    name = "fold-batchnorm"
    # Rule names to leave out, separated by ',' or '+' (e.g. `fold-batchnorm{disable=conv-add}`).
    disable: str = ""

    def __post_init__(self) -> None:
        select_rules(RULES, self.disable)

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        out, fired = apply_rules(graph, select_rules(RULES, self.disable))
        if fired:
            ctx.report(self.name, **fired)
        return out


__doc__ = (__doc__ or "") + "\nRules:\n\n" + rule_table(RULES)
