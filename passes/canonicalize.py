"""canonicalize: rewrite the graph to a simpler normal form, to a fixpoint.

The rules are one table (`RULES`): a pattern and a rewrite each, applied by the generic driver
(`passes/rewrite.py`) until nothing changes. Importers and other passes leave behind exactly
what these rules remove: exporters' reshape chains and transpose pairs, `x * 1` from folded
scales, `copy` nodes for ONNX Identity, constant subgraphs that new rewrites created (a
transposed weight), and the same computation twice (two heads reading one projection).

Every rule keeps the values' shapes and dtypes and the graph's input and output names (the
driver checks; `copy(w)` as a graph output goes, and w takes the output's name).
Algebraic identities are exact: `x * c` is dropped only when every element of c is exactly 1
and broadcasting c does not change x's shape or dtype.

Rules a caller does not want are switched off by name: `canonicalize{disable=cse,fold-constants}`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modelc.ir.graph import Graph, Node
from modelc.ir.opdef import COMMUTATIVE, get_op
from modelc.passes.fold_constants import DEFAULT_MAX_BYTES, fold_node
from modelc.passes.patterns import Match, all_equal, const, op, var
from modelc.passes.registry import Pass, PassContext, register_pass
from modelc.passes.rewrite import (
    DELETE,
    Replacement,
    Rewriter,
    Rule,
    apply_rules,
    rule_table,
    select_rules,
)

X = var("x")
# Constants up to this many elements are compared by value for CSE; bigger ones by name (the
# hash would cost more than it finds: exporters already share identical weights).
CSE_CONST_ELEMENTS = 4096


def _to(name: str) -> Callable[[Match, Rewriter], Replacement | None]:
    """Replace the root by the bound value when it has the root's shape and dtype (so a
    broadcast constant that would have grown x, or a cast that changes it, keeps the node)."""

    def rewrite(m: Match, rw: Rewriter) -> Replacement | None:
        v, out = m[name], m.root.output.type
        t = rw.type(v)
        return v if t.shape == out.shape and t.dtype == out.dtype else None

    return rewrite


def _fold(m: Match, rw: Rewriter) -> Replacement | None:
    n = m.root
    arrays = {i: a for i in n.inputs if i and (a := rw.constant(i)) is not None}
    results = fold_node(n, arrays, int(rw.options.get("max_fold_bytes", DEFAULT_MAX_BYTES)))
    if results is None:
        return None
    return tuple(rw.add_const(r, o.name, type_=o.type) for o, r in zip(n.outputs, results))


def _dead(m: Match, rw: Rewriter) -> Replacement | None:
    return DELETE if rw.is_dead(m.root) else None


def _value_key(name: str, rw: Rewriter) -> str:
    """How CSE sees an input: small constants by content, everything else by name."""
    arr = rw.constant(name)
    if arr is None or arr.size > CSE_CONST_ELEMENTS:
        return "%" + name
    digests: dict[str, str] = rw.memo.setdefault("cse-digest", {})
    if name not in digests:
        h = hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()
        digests[name] = f"#{arr.dtype}{list(arr.shape)}{h}"
    return digests[name]


def _cse(m: Match, rw: Rewriter) -> Replacement | None:
    n = m.root
    keys = [_value_key(i, rw) if i else "_" for i in n.inputs]
    if get_op(n.op).has(COMMUTATIVE):
        keys.sort()
    table: dict[tuple[object, ...], Node] = rw.memo.setdefault("cse", {})
    key = (n.op, tuple(keys), n.attrs, tuple((o.type.shape, o.type.dtype) for o in n.outputs))
    prev = table.get(key)
    if prev is not None and rw.is_alive(prev) and prev is not n:
        return tuple(o.name for o in prev.outputs)
    table[key] = n
    return None


def _reshape_reshape(m: Match, rw: Rewriter) -> Replacement | None:
    return rw.add_node("reshape", [m["x"]], {"shape": m.root.attrs["shape"]})


def _perm(n: Node) -> tuple[int, ...]:
    return tuple(int(p) for p in n.attrs["perm"])


def _transpose_transpose(m: Match, rw: Rewriter) -> Replacement | None:
    inner, outer = _perm(m.node("inner")), _perm(m.root)
    perm = tuple(inner[p] for p in outer)  # out dim i = inner's dim outer[i] = x's inner[..]
    if perm == tuple(range(len(perm))):
        return _to("x")(m, rw)
    return rw.add_node("transpose", [m["x"]], {"perm": perm})


def _identity_perm(n: Node) -> bool:
    return _perm(n) == tuple(range(len(_perm(n))))


def _unit_transpose(m: Match, rw: Rewriter) -> Replacement | None:
    """A transpose that only moves size-1 dims keeps the element order: it is a reshape (a free
    view instead of a copy kernel)."""
    shape = rw.type(m["x"]).shape
    moved = [p for p in _perm(m.root) if shape[p] != 1]
    if moved != sorted(moved):
        return None
    return rw.add_node("reshape", [m["x"]], {"shape": m.root.output.type.shape})


RULES: tuple[Rule, ...] = (
    Rule("dead-code", None, _dead, "a node nothing reads (and no graph output) is removed"),
    Rule(
        "fold-constants",
        None,
        _fold,
        "a node whose inputs are all constants becomes a constant (the op's reference)",
    ),
    Rule(
        "mul-one",
        op("mul", X, const(pred=all_equal(1))),
        _to("x"),
        "x*1, 1*x -> x (1 exactly, everywhere; x's shape and dtype unchanged by broadcasting)",
    ),
    Rule(
        "add-zero",
        op("add", X, const(pred=all_equal(0))),
        _to("x"),
        "x+0, 0+x -> x (same conditions)",
    ),
    Rule(
        "sub-zero", op("sub", X, const(pred=all_equal(0))), _to("x"), "x-0 -> x (same conditions)"
    ),
    Rule("div-one", op("div", X, const(pred=all_equal(1))), _to("x"), "x/1 -> x (same conditions)"),
    Rule(
        "pow-one", op("pow", X, const(pred=all_equal(1))), _to("x"), "x**1 -> x (same conditions)"
    ),
    Rule("cast-noop", op("cast", X), _to("x"), "a cast to the dtype x already has -> x"),
    Rule("copy-noop", op("copy", X), _to("x"), "copy(x) -> x (an output copy hands its name to x)"),
    Rule("expand-noop", op("expand", X), _to("x"), "an expand that keeps x's shape -> x"),
    Rule("reshape-noop", op("reshape", X), _to("x"), "a reshape to x's own shape -> x"),
    Rule(
        "reshape-reshape",
        op("reshape", op("reshape", X)),
        _reshape_reshape,
        "reshape(reshape(x)) -> one reshape",
    ),
    Rule(
        "transpose-identity",
        op("transpose", X, where=_identity_perm),
        _to("x"),
        "a transpose by the identity permutation -> x",
    ),
    Rule(
        "transpose-transpose",
        op("transpose", op("transpose", X, name="inner")),
        _transpose_transpose,
        "transpose(transpose(x)) -> one transpose, or x when the two cancel",
    ),
    Rule(
        "transpose-unit-dims",
        op("transpose", X),
        _unit_transpose,
        "a transpose that only moves size-1 dims -> reshape (a view)",
    ),
    Rule(
        "cse",
        None,
        _cse,
        "a node equal to an earlier one (op, inputs, attributes; small constants by value) -> it",
    ),
)


@register_pass
@dataclass(frozen=True)
class Canonicalize(Pass):
    name = "canonicalize"
    # Rule names to leave out, separated by ',' or '+' (`canonicalize{disable=cse,copy-noop}`).
    disable: str = ""
    # Constant folding leaves results larger than this to run time (as fold-constants does).
    max_fold_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        select_rules(RULES, self.disable)  # reject unknown rule names when the pass is made

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        rules = select_rules(RULES, self.disable)
        out, fired = apply_rules(graph, rules, options={"max_fold_bytes": self.max_fold_bytes})
        if fired:
            ctx.report(self.name, **fired)
        return out


__doc__ = (__doc__ or "") + "\nRules, tried in this order at each node:\n\n" + rule_table(RULES)
