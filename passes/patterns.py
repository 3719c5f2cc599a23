"""Graph patterns as data, and a matcher over them.

Rewrite passes (canonicalize, fold-batchnorm, fuse-patterns, layout) describe what they look for
as small trees instead of nested `if`s, so a rule reads like the subgraph it replaces and a new
rule is one table row:

    x = var("x")
    gelu = op("mul", op("mul", x, op("add", op("erf", ...), const(pred=near(1.0)))),
              const(pred=near(0.5)))

- `op(names, *inputs)` matches a node whose op is one of `names` (or any op: `ANY_OP`, with a
  `where` predicate) and whose inputs match; ops with the `commutative` trait (add, mul, ...)
  also match with their two inputs swapped;
- `var(name)` matches any value and binds it; a name used twice must bind the same value both
  times (that is how `sub(x, reduce_mean(x))` says "the same x");
- `const(name, pred)` matches a constant whose array satisfies `pred`;
- `either(p, q, ...)` matches any one of the alternatives (a pattern is a small grammar).

Matching is a backtracking generator over bindings, so alternatives and commutative orders are
tried until one matches and the rule's rewrite accepts it. A rule's rewrite function does the
checks that need several bindings at once (same axes, shapes, ...). Matching is read-only: it
works on any `GraphView` (an immutable `Graph` through `view_of`, or the rewriter's working
graph).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from modelc.ir.graph import Graph, Node
from modelc.ir.opdef import COMMUTATIVE, get_op
from modelc.ir.types import TensorType

ConstPred = Callable[[np.ndarray], bool]
NodePred = Callable[[Node], bool]


class GraphView(Protocol):
    """What matching needs to know about a graph."""

    def producer(self, value: str) -> Node | None: ...

    def constant(self, value: str) -> np.ndarray | None: ...

    def type(self, value: str) -> TensorType: ...

    def users(self, value: str) -> tuple[Node, ...]: ...

    def is_output(self, value: str) -> bool: ...


@dataclass(frozen=True)
class _ImmutableView:
    graph: Graph

    def producer(self, value: str) -> Node | None:
        return self.graph.producers.get(value)

    def constant(self, value: str) -> np.ndarray | None:
        return self.graph.constant(value)

    def type(self, value: str) -> TensorType:
        return self.graph.types[value]

    def users(self, value: str) -> tuple[Node, ...]:
        return self.graph.users.get(value, ())

    def is_output(self, value: str) -> bool:
        return value in self.graph.outputs


def view_of(graph: Graph) -> GraphView:
    """A `GraphView` of an immutable graph (for matching outside the rewriter)."""
    return _ImmutableView(graph)


# ---- the pattern language ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """One position of a pattern tree; build them with `op`, `var`, `const` and `either`."""

    ops: frozenset[str] | None = None  # None: a leaf (any value, or a constant with `const`)
    inputs: tuple[Pattern, ...] = ()
    name: str = ""  # binding name ("" binds nothing)
    const: ConstPred | None = None  # leaves: the value must be a constant satisfying this
    is_const: bool = False
    where: NodePred | None = None  # op patterns: a predicate on the matched node (attributes)
    alternatives: tuple[Pattern, ...] = ()  # `either`: one of these
    commutative: bool | None = None  # None: from the op's `commutative` trait
    variadic: bool = False  # `inputs` match a prefix; further inputs are not looked at


ANY_OP = "*"  # `op(ANY_OP, ...)`: a node of any op (narrow it with `where`)


def op(
    ops: str | Iterable[str],
    *inputs: Pattern,
    name: str = "",
    where: NodePred | None = None,
    commutative: bool | None = None,
    variadic: bool = False,
) -> Pattern:
    """A node of one of `ops` (a name or several, or `ANY_OP`) whose inputs match `inputs`, in
    order (trailing absent optional inputs do not count); with `variadic`, `inputs` only match
    the first inputs of a node that may have more (concat)."""
    names = frozenset([ops] if isinstance(ops, str) else ops)
    return Pattern(
        names, tuple(inputs), name, where=where, commutative=commutative, variadic=variadic
    )


def var(name: str = "") -> Pattern:
    """Any value (a graph input, a constant or a node output), bound to `name`."""
    return Pattern(name=name)


def const(name: str = "", pred: ConstPred | None = None) -> Pattern:
    """A constant whose array satisfies `pred` (any constant without one)."""
    return Pattern(name=name, const=pred, is_const=True)


def either(*alternatives: Pattern, name: str = "") -> Pattern:
    """Any one of `alternatives` (tried in order); `name` binds the value it matched."""
    return Pattern(name=name, alternatives=tuple(alternatives))


# ---- constant predicates (reused by rule tables) ----------------------------------------------


def scalar(arr: np.ndarray) -> bool:
    """One element, whatever the rank (a `[1,1,1]` constant broadcasts like a scalar)."""
    return arr.size == 1


def near(target: float, rtol: float = 1e-4) -> ConstPred:
    """A one-element float constant within `rtol` of `target` (exporters round constants such
    as sqrt(2) and sqrt(2/pi) differently; a relative 1e-4 tells them apart from anything
    else)."""

    def pred(arr: np.ndarray) -> bool:
        return (
            arr.size == 1
            and arr.dtype.kind == "f"
            and bool(np.isclose(float(arr.reshape(-1)[0]), target, rtol=rtol, atol=0.0))
        )

    return pred


def all_equal(value: float) -> ConstPred:
    """Every element equals `value` exactly (x*1 and x+0 must be exact to be removed)."""

    def pred(arr: np.ndarray) -> bool:
        return arr.size > 0 and arr.dtype.kind in "fiu" and bool(np.all(arr == value))

    return pred


# ---- matching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """A successful match rooted at `root`: value bindings, named nodes, every matched node."""

    root: Node
    values: Mapping[str, str] = field(default_factory=dict)
    nodes: Mapping[str, Node] = field(default_factory=dict)
    interior: tuple[Node, ...] = ()

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def node(self, name: str) -> Node:
        return self.nodes[name]


@dataclass(frozen=True)
class _State:
    values: tuple[tuple[str, str], ...] = ()
    nodes: tuple[tuple[str, Node], ...] = ()
    interior: tuple[Node, ...] = ()

    def bind(self, name: str, value: str) -> _State | None:
        if not name:
            return self
        for k, v in self.values:
            if k == name:
                return self if v == value else None
        return _State(self.values + ((name, value),), self.nodes, self.interior)

    def visit(self, name: str, node: Node) -> _State:
        nodes = self.nodes + ((name, node),) if name else self.nodes
        interior = (
            self.interior if any(n is node for n in self.interior) else self.interior + (node,)
        )
        return _State(self.values, nodes, interior)


def match_node(pattern: Pattern, node: Node, view: GraphView) -> Iterator[Match]:
    """Every way `pattern` matches with its root at `node` (lazily; first is usually enough)."""
    for st in _match_at(pattern, node, node.outputs[0].name, view, _State()):
        yield Match(node, dict(st.values), dict(st.nodes), st.interior)


def _match_value(p: Pattern, value: str, view: GraphView, st: _State) -> Iterator[_State]:
    if p.alternatives:
        for alt in p.alternatives:
            for s in _match_value(alt, value, view, st):
                bound = s.bind(p.name, value)
                if bound is not None:
                    yield bound
        return
    if p.ops is None:
        if p.is_const:
            arr = view.constant(value)
            if arr is None or (p.const is not None and not p.const(arr)):
                return
        bound = st.bind(p.name, value)
        if bound is not None:
            yield bound
        return
    node = view.producer(value)
    if node is None or len(node.outputs) != 1:
        return
    yield from _match_at(p, node, value, view, st)


def _match_at(p: Pattern, node: Node, value: str, view: GraphView, st: _State) -> Iterator[_State]:
    if p.alternatives or p.ops is None:
        yield from _match_value(p, value, view, st)
        return
    inputs = _present(node.inputs)
    if ANY_OP not in p.ops and node.op not in p.ops:
        return
    if len(inputs) != len(p.inputs) and not (p.variadic and len(inputs) >= len(p.inputs)):
        return
    if p.where is not None and not p.where(node):
        return
    bound = st.bind(p.name, value)
    if bound is None:
        return
    bound = bound.visit(p.name, node)
    orders = [inputs]
    commutative = p.commutative
    if commutative is None:
        commutative = get_op(node.op).has(COMMUTATIVE)
    if commutative and len(inputs) == 2 and inputs[0] != inputs[1]:
        orders.append((inputs[1], inputs[0]))
    for order in orders:
        yield from _match_inputs(p.inputs, order[: len(p.inputs)], view, bound)


def _present(inputs: tuple[str, ...]) -> tuple[str, ...]:
    """Inputs without trailing absent ones: `conv(x, w, _)` matches a two-input pattern."""
    n = len(inputs)
    while n and not inputs[n - 1]:
        n -= 1
    return inputs[:n]


def _match_inputs(
    pats: tuple[Pattern, ...], values: tuple[str, ...], view: GraphView, st: _State
) -> Iterator[_State]:
    if not pats:
        yield st
        return
    if not values[0]:  # an absent optional input matches nothing
        return
    for s in _match_value(pats[0], values[0], view, st):
        yield from _match_inputs(pats[1:], values[1:], view, s)


def exclusive(m: Match, view: GraphView) -> bool:
    """True when every matched node but the root is used only inside the match and is not a
    graph output: replacing the root then removes the whole subgraph instead of duplicating
    part of its work."""
    inside = {id(n) for n in m.interior}
    for n in m.interior:
        if n is m.root:
            continue
        for o in n.outputs:
            if view.is_output(o.name):
                return False
            if any(id(u) not in inside for u in view.users(o.name)):
                return False
    return True


def root_ops(p: Pattern) -> frozenset[str] | None:
    """The ops a pattern's root can have (None: any), to index rules by the root's op."""
    if p.alternatives:
        found: set[str] = set()
        for alt in p.alternatives:
            ops = root_ops(alt)
            if ops is None:
                return None
            found |= ops
        return frozenset(found)
    if p.ops is not None and ANY_OP in p.ops:
        return None
    return p.ops
