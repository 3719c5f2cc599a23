"""layout: choose the tensor layout of spatial regions (NCHW or NHWC) and remove the transposes
that layout changes leave between them.

`layout{format=nhwc}` runs conv / pool regions channels-last, where the target prefers it
(`ctx.capabilities.preferred_layout`) or a pipeline asks for it:

- NCHW (`format=nchw`, or the default on a target without `preferred_layout`, such as `cpu`):
  nothing; the graph is already NCHW.
- NHWC, first phase (`to-nhwc`): every conv, max_pool and avg_pool (the `SPATIAL_OPS` whose
  op declares a `layout` attribute) becomes its `layout="nhwc"` form between two transposes,
  transpose(x, to_last) -> op -> transpose(y, to_first); a conv's weight is re-packed from
  [M, C/g, *K] to [*K, C/g, M] (folded at compile time when it is a constant, else a transpose
  the graph keeps). The other spatial ops (batch_norm, lrn, resize, ...) stay NCHW and are
  reported (`ctx.reports["layout"]["nchw_only"]`). There is no cost model: every anchor is
  converted, so one boxed in by NCHW-only ops pays its two border transposes (run
  fold-batchnorm first so batch norms do not split regions).
- NHWC, second phase: the part that works for every op, moving transposes down through
  layout-agnostic ops so that pairs meet and cancel. Between two converted ops the first one's
  to_first transpose sinks through the activations, residual adds and concats between them and
  cancels with the second one's to_last, so a region keeps only the transposes at its borders.
  A graph converted from a channels-last framework (tf2onnx writes Transpose -> Conv ->
  Transpose around every conv) loses its transposes the same way. Sinking a transpose past an
  op with a constant operand transposes that constant at compile time (folded, never a
  run-time kernel).

The sinking rules are a table like canonicalize's, run with canonicalize's transpose rules
(compose, cancel, identity) and constant folding to a fixpoint. A transpose moves only when it
has no other reader (so no transpose is ever duplicated): each rule keeps the number of
transposes or lowers it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from modelc.ir.graph import Graph, Node
from modelc.ir.opdef import BROADCAST, ELEMENTWISE, get_op
from modelc.ir.ops.nn import nhwc_weight_perm
from modelc.ir.ops.window import to_first, to_last
from modelc.passes.canonicalize import RULES as CANONICAL_RULES
from modelc.passes.patterns import ANY_OP, Match, const, either, op, var
from modelc.passes.registry import Pass, PassContext, register_pass
from modelc.passes.rewrite import Replacement, Rewriter, Rule, apply_rules, rule_table

FORMATS = ("nchw", "nhwc")
# Ops whose semantics are channels-first; a region of them is what `nhwc` would convert.
SPATIAL_OPS = frozenset(
    {"conv", "conv_transpose", "max_pool", "avg_pool", "batch_norm", "lrn", "resize"}
    | {"depth_to_space", "space_to_depth"}
)
# canonicalize's rules the sinking needs: cancel / compose what meets, fold re-packed constants.
_REUSED = ("dead-code", "fold-constants", "transpose-identity", "transpose-transpose")

T = op("transpose", var("x"), name="t")


def _perm(n: Node) -> tuple[int, ...]:
    return tuple(int(p) for p in n.attrs["perm"])


def _unary(n: Node) -> bool:
    d = get_op(n.op)
    return d.has(ELEMENTWISE) and d.num_inputs == (1, 1)


def _binary(n: Node) -> bool:
    d = get_op(n.op)
    return d.has(ELEMENTWISE) and d.has(BROADCAST) and d.num_inputs == (2, 2)


def _rebuild_after(m: Match, rw: Rewriter, inputs: list[str], **attrs: object) -> str:
    """The root op on the untransposed inputs, then the transpose."""
    root = m.root
    y = rw.add_node(root.op, inputs, {**root.attrs, **attrs}, hint=root.output.name)
    return rw.add_node("transpose", [y], {"perm": _perm(m.node("t"))})


def _sink_unary(m: Match, rw: Rewriter) -> Replacement | None:
    return _rebuild_after(m, rw, [m["x"]])


def _sink_binary(m: Match, rw: Rewriter) -> Replacement | None:
    t2 = m.node("t2")
    if _perm(t2) != _perm(m.node("t")) or m.root.inputs[0] == m.root.inputs[1]:
        return None
    first = m.root.inputs[0] == m.node("t").output.name
    xs = [m["x"], m["x2"]] if first else [m["x2"], m["x"]]
    return _rebuild_after(m, rw, xs)


def _sink_past_constant(m: Match, rw: Rewriter) -> Replacement | None:
    """op(transpose(x, p), c) = transpose(op(x, c'), p) with c' = c laid out like x: c
    broadcast-aligned to the rank, then permuted by the inverse of p (folded now)."""
    t = m.node("t")
    perm = _perm(t)
    c = rw.constant(m["c"])
    assert c is not None
    out = m.root.output.type
    if c.ndim > len(perm) or out.shape != t.output.type.shape:
        return None
    inverse = tuple(int(i) for i in np.argsort(perm))
    packed = np.transpose(c.reshape((1,) * (len(perm) - c.ndim) + c.shape), inverse)
    c2 = rw.add_const(packed, m["c"])
    first = m.root.inputs[0] == t.output.name
    return _rebuild_after(m, rw, [m["x"], c2] if first else [c2, m["x"]])


def _sink_past_transposed(m: Match, rw: Rewriter) -> Replacement | None:
    """op(T(x), y) = T(op(x, a)) when a = transpose(y, T^-1) already exists: a residual add
    of a channels-last input whose NCHW copy the conv already made. No transpose is added."""
    t = m.node("t")
    perm = _perm(t)
    inverse = tuple(int(i) for i in np.argsort(perm))
    y = m["y"]
    if rw.constant(y) is not None or rw.type(y).shape != m.root.output.type.shape:
        return None
    a = next(
        (
            u.output.name
            for u in rw.users(y)
            if u.op == "transpose" and _perm(u) == inverse and rw.defined_before(u, m.root)
        ),
        None,
    )
    if a is None:
        return None
    first = m.root.inputs[0] == t.output.name
    return _rebuild_after(m, rw, [m["x"], a] if first else [a, m["x"]])


def _sink_concat(m: Match, rw: Rewriter) -> Replacement | None:
    producers = [rw.producer(i) for i in m.root.inputs]
    perm = _perm(m.node("t"))
    if any(p is None or p.op != "transpose" or _perm(p) != perm for p in producers):
        return None
    if any(len(rw.users(p.output.name)) != 1 or rw.is_output(p.output.name) for p in producers):
        return None  # another reader keeps the transpose: moving it would duplicate it
    xs = [p.inputs[0] for p in producers if p is not None]
    return _rebuild_after(m, rw, xs, axis=perm[int(m.root.attrs["axis"])])


def _sink_reduce(m: Match, rw: Rewriter) -> Replacement | None:
    if not m.root.attrs["keepdims"]:
        return None
    perm = _perm(m.node("t"))
    axes = m.root.attrs["axes"] or tuple(range(len(perm)))
    return _rebuild_after(m, rw, [m["x"]], axes=tuple(sorted(perm[int(a)] for a in axes)))


def _sink_softmax(m: Match, rw: Rewriter) -> Replacement | None:
    return _rebuild_after(m, rw, [m["x"]], axis=_perm(m.node("t"))[int(m.root.attrs["axis"])])


C = const("c")
SINK_RULES: tuple[Rule, ...] = (
    Rule("sink-unary", op(ANY_OP, T, where=_unary), _sink_unary, "f(T(x)) -> T(f(x))", True),
    Rule(
        "sink-binary",
        op(ANY_OP, T, op("transpose", var("x2"), name="t2"), where=_binary),
        _sink_binary,
        "f(T(a), T(b)) -> T(f(a, b)) for one permutation T",
        True,
    ),
    Rule(
        "sink-constant",
        either(
            op(ANY_OP, T, C, where=_binary, commutative=False),
            op(ANY_OP, C, T, where=_binary, commutative=False),
        ),
        _sink_past_constant,
        "f(T(x), c) -> T(f(x, T^-1(c))), the constant re-packed at compile time",
        True,
    ),
    Rule(
        "sink-transposed",
        either(
            op(ANY_OP, T, var("y"), where=_binary, commutative=False),
            op(ANY_OP, var("y"), T, where=_binary, commutative=False),
        ),
        _sink_past_transposed,
        "f(T(x), y) -> T(f(x, a)) where a = T^-1(y) already exists (a residual input)",
        True,
    ),
    Rule(
        "sink-concat",
        op("concat", T, variadic=True),
        _sink_concat,
        "concat(T(a), T(b), ...) -> T(concat(a, b, ...)) on the permuted axis",
        True,
    ),
    Rule(
        "sink-reduce",
        op(("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"), T),
        _sink_reduce,
        "reduce(T(x), keepdims) -> T(reduce(x)) over the permuted axes",
        True,
    ),
    Rule(
        "sink-softmax",
        op(("softmax", "log_softmax"), T),
        _sink_softmax,
        "softmax(T(x)) -> T(softmax(x)) on the permuted axis",
        True,
    ),
)
RULES: tuple[Rule, ...] = tuple(r for r in CANONICAL_RULES if r.name in _REUSED) + SINK_RULES


def _to_nhwc(m: Match, rw: Rewriter) -> Replacement | None:
    """op(x, w?, b?) -> to_first(op_nhwc(to_last(x), pack(w)?, b?)); the bias is per channel in
    either layout. A constant weight is packed now, so no run-time transpose is left for it."""
    root = m.root
    rank = rw.type(root.inputs[0]).rank
    x = rw.add_node("transpose", [root.inputs[0]], {"perm": to_last(rank)})
    inputs = [x, *root.inputs[1:]]
    if root.op == "conv":
        perm = nhwc_weight_perm(rank)
        w = rw.constant(root.inputs[1])
        if w is not None:
            inputs[1] = rw.add_const(np.ascontiguousarray(w.transpose(perm)), root.inputs[1])
        else:
            inputs[1] = rw.add_node("transpose", [root.inputs[1]], {"perm": perm})
    y = rw.add_node(root.op, inputs, {**root.attrs, "layout": "nhwc"}, hint=root.output.name)
    return rw.add_node("transpose", [y], {"perm": to_first(rank)})


def _nchw_anchor(n: Node) -> bool:
    return supports_nhwc(n.op) and n.attrs.get("layout", "nchw") == "nchw"


CONVERT_RULES: tuple[Rule, ...] = (
    Rule(
        "to-nhwc",
        op(("conv", "max_pool", "avg_pool"), var("x"), variadic=True, where=_nchw_anchor),
        _to_nhwc,
        "op(x, w) -> T^-1(op_nhwc(T(x), w packed [*K, C/g, M])) for conv, max_pool, avg_pool",
    ),
)


def supports_nhwc(op_name: str) -> bool:
    """Whether an op can run channels-last: its definition declares a `layout` attribute
    (the op owner's lowering then indexes either layout)."""
    return "layout" in get_op(op_name).attrs


@register_pass
@dataclass(frozen=True)
class Layout(Pass):
    name = "layout"
    # nchw | nhwc; empty: the target's `preferred_layout` capability, else nchw.
    format: str = ""

    def __post_init__(self) -> None:
        if self.format and self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        fmt = self.format or getattr(ctx.capabilities, "preferred_layout", None) or "nchw"
        if fmt == "nchw":
            return graph
        anchors = Counter(n.op for n in graph.nodes if n.op in SPATIAL_OPS)
        nchw_only = {k: v for k, v in sorted(anchors.items()) if not supports_nhwc(k)}
        converted, fired = apply_rules(graph, CONVERT_RULES)
        out, sunk = apply_rules(converted, RULES)
        ctx.report(self.name, format=fmt, nchw_only=nchw_only, **fired, **sunk)
        return out


__doc__ = (__doc__ or "") + "\nRules:\n\n" + rule_table(CONVERT_RULES + RULES)
