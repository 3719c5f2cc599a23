"""The rewrite driver: apply a table of rules to a graph until nothing changes.

A `Rule` is data: a name, a pattern (`passes/patterns.py`) or None for rules that look at every
node, a rewrite function and a one-line doc. The driver walks the nodes in order, tries the
rules indexed by the node's op, and applies the first rewrite that returns a replacement; it
repeats rounds until one changes nothing (a fixpoint), so rules compose: one rule's output is
another rule's input on the next round.

The graph is immutable; the driver works on a private mutable copy (`Rewriter`) and builds one
new `Graph` at the end. What the copy guarantees, so rules need not:

- new nodes go right before the node they replace, so order stays topological;
- a replacement that is a new value takes the replaced value's name (value names are what users
  and tools see, and graph outputs keep theirs); a graph output replaced by an existing node
  output passes its name on to that value; replacing it by a graph input or a constant (whose
  names are kept too) or by another output is refused and rolled back;
- new values that had to take a `_N` suffix because their name was still in use get it back
  once the rewrite that made them (or a later one) frees it;
- a node none of whose outputs is used any more (and none is a graph output) is removed, and so,
  transitively, are its producers: a rewrite never leaves its old subgraph behind;
- every replacement has the replaced value's shape and dtype (checked: a rule that breaks it is
  a bug and fails loudly).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelc.errors import ShapeError, UnsupportedTypeError, VerifyError
from modelc.ir.attrs import Attrs
from modelc.ir.graph import Constant, Graph, Node, Value, make_constant
from modelc.ir.opdef import get_op
from modelc.ir.types import TensorType
from modelc.passes.patterns import Match, Pattern, exclusive, match_node, root_ops

# What a rewrite returns: one value per output of the root, or DELETE (the root is dead code).
Replacement = str | tuple[str, ...]
RewriteFn = Callable[[Match, "Rewriter"], Replacement | None]
DELETE: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A rewrite rule. `pattern` None means the rule sees every node (its match has only the
    root). With `exclusive`, every matched node but the root must be used only inside the match
    (fusions must not duplicate work that something else still reads)."""

    name: str
    pattern: Pattern | None
    rewrite: RewriteFn
    doc: str
    exclusive: bool = False


def rule_table(rules: Sequence[Rule]) -> str:
    """The rules as a Markdown table (docs and `--help` texts print it)."""
    lines = ["| rule | what it does |", "|---|---|"]
    lines += [f"| `{r.name}` | {r.doc} |" for r in rules]
    return "\n".join(lines)


def select_rules(rules: Sequence[Rule], disable: str) -> tuple[Rule, ...]:
    """`rules` without the names in `disable`, separated by ',' or '+' (`{disable=a,b}` and
    `{disable=a+b}` both work). Unknown names are an error, so a typo leaves no rule on."""
    names = {s.strip() for s in disable.replace(",", "+").split("+") if s.strip()}
    unknown = names - {r.name for r in rules}
    if unknown:
        known = ", ".join(r.name for r in rules)
        raise ValueError(f"unknown rule(s) {sorted(unknown)}; rules: {known}")
    return tuple(r for r in rules if r.name not in names)


class Rewriter:
    """The mutable working copy of a graph that rules read and build into."""

    def __init__(self, graph: Graph, options: Mapping[str, Any] | None = None) -> None:
        self.name = graph.name
        # Pass options rules may read (e.g. canonicalize's fold size limit).
        self.options: Mapping[str, Any] = dict(options or {})
        self.inputs = graph.inputs
        self.outputs: list[str] = list(graph.outputs)
        self._output_set = set(graph.outputs)
        self.order: list[Node] = list(graph.nodes)
        self.consts: dict[str, Constant] = dict(graph.constant_map)
        self.types: dict[str, TensorType] = dict(graph.types)
        self.producers: dict[str, Node] = dict(graph.producers)
        self.user_lists: dict[str, list[Node]] = {k: list(v) for k, v in graph.users.items()}
        self.alive: set[int] = {id(n) for n in self.order}
        self.taken: set[str] = set(self.types)
        # Scratch space rules may keep for one round (CSE's table); cleared between rounds.
        self.memo: dict[str, Any] = {}
        self._created: list[str] | None = None  # values made by the current rewrite
        self._hints: dict[str, str] = {}  # created value -> the name it asked for
        self._anchor: Node | None = None  # the node being rewritten (new nodes go before it)
        self._loc = ""  # its loc, which new nodes inherit

    # ---- GraphView -------------------------------------------------------------------------------

    def producer(self, value: str) -> Node | None:
        return self.producers.get(value)

    def constant(self, value: str) -> np.ndarray | None:
        c = self.consts.get(value)
        return None if c is None else c.data

    def type(self, value: str) -> TensorType:
        return self.types[value]

    def users(self, value: str) -> tuple[Node, ...]:
        return tuple(self.user_lists.get(value, ()))

    def is_output(self, value: str) -> bool:
        return value in self._output_set

    # ---- building (for rewrite functions) ------------------------------------------------------

    def fresh(self, hint: str) -> str:
        """An unused value name: `hint` itself, else its stem (without a `_N` suffix) with the
        first free `_N`, so names stay short and deterministic through repeated rewrites."""
        name = hint or "v"
        if name in self.taken:
            stem = re.sub(r"_\d+$", "", name) or name
            k = 1
            while f"{stem}_{k}" in self.taken:
                k += 1
            name = f"{stem}_{k}"
        self.taken.add(name)
        return name

    def add_const(
        self, data: Any, hint: str = "c", dtype: Any = None, type_: TensorType | None = None
    ) -> str:
        """A new constant (cast to `dtype`, a numpy dtype, when given; typed `type_` when given,
        to keep quantization); returns its name."""
        arr = np.asarray(data, dtype=dtype)
        name = self.fresh(hint)
        self._hints[name] = hint
        c = make_constant(name, arr, type_)
        self.consts[name] = c
        self.types[name] = c.value.type
        if self._created is not None:
            self._created.append(name)
        return name

    def add_node(
        self,
        op: str,
        inputs: Sequence[str],
        attrs: Mapping[str, Any] | None = None,
        *,
        hint: str = "",
        loc: str = "",
    ) -> str:
        """Insert `op(inputs) {attrs}` (defaults filled, types inferred) before the node being
        rewritten; returns its (single) output."""
        opdef = get_op(op)
        a = opdef.check_attrs(Attrs(attrs or {}), loc=loc)
        in_types = [self.types[i] if i else None for i in inputs]
        (t,) = opdef.infer_types(in_types, a, loc=loc)
        name = self.fresh(hint or op)
        self._hints[name] = hint or op
        node = Node(op, tuple(inputs), (Value(name, t),), a, loc or self._loc)
        self._insert(node)
        if self._created is not None:
            self._created.append(name)
        return name

    # ---- the driver ------------------------------------------------------------------------------

    def _insert(self, node: Node) -> None:
        at = self._index(self._anchor) if self._anchor is not None else len(self.order)
        self.order.insert(at, node)
        self.alive.add(id(node))
        for o in node.outputs:
            self.types[o.name] = o.type
            self.producers[o.name] = node
        for i in node.inputs:
            if i:
                self.user_lists.setdefault(i, []).append(node)

    def _index(self, node: Node) -> int:
        for k, n in enumerate(self.order):
            if n is node:
                return k
        raise KeyError(node.op)

    def _remove(self, node: Node) -> None:
        """Drop `node`, then every producer left without users (transitively)."""
        stack = [node]
        while stack:
            n = stack.pop()
            if id(n) not in self.alive:
                continue
            self.alive.discard(id(n))
            del self.order[self._index(n)]
            for o in n.outputs:
                self.producers.pop(o.name, None)
            for i in n.inputs:
                if not i:
                    continue
                lst = self.user_lists.get(i, [])
                for k, u in enumerate(lst):
                    if u is n:
                        del lst[k]
                        break
                p = self.producers.get(i)
                if p is not None and self.is_dead(p):
                    stack.append(p)

    def is_dead(self, n: Node) -> bool:
        """No output of `n` is read by a node or is a graph output."""
        return all(
            not self.user_lists.get(o.name) and not self.is_output(o.name) for o in n.outputs
        )

    def defined_before(self, n: Node, other: Node) -> bool:
        """`n` comes before `other` in the working order (its outputs may feed new nodes
        placed before `other`)."""
        return self._index(n) < self._index(other)

    def is_alive(self, n: Node) -> bool:
        """`n` is (still) a node of the working graph, in this exact form."""
        return id(n) in self.alive

    def _redirect(self, old: str, new: str) -> None:
        """Every user of `old` reads `new` instead."""
        for u in list(self.user_lists.get(old, ())):
            if id(u) in self.alive:
                self._rebuild(u, tuple(new if i == old else i for i in u.inputs), u.outputs)
        self.user_lists.pop(old, None)

    def _rename(self, old: str, new: str, keep_users: bool = False) -> None:
        """Give value `old` the name `new` (free: its owner was removed); with `keep_users`,
        the nodes reading `old` are rebuilt to read `new` (fresh values have no readers)."""
        if keep_users:
            for u in list(self.user_lists.get(old, ())):
                self._rebuild(u, tuple(new if i == old else i for i in u.inputs), u.outputs)
        t = self.types.pop(old)
        self.types[new] = t
        if old in self.consts:
            c = self.consts.pop(old)
            self.consts[new] = Constant(Value(new, c.value.type), c.data)
        else:
            p = self.producers.pop(old)
            outs = tuple(Value(new, o.type) if o.name == old else o for o in p.outputs)
            self._rebuild(p, p.inputs, outs)
        self.user_lists.pop(old, None)  # (its readers, if any, were rebuilt above)

    def _rebuild(self, n: Node, inputs: tuple[str, ...], outputs: tuple[Value, ...]) -> Node:
        """Replace node `n` in place by one with these inputs and outputs (nodes are
        immutable); producer and user tables follow."""
        nn = Node(n.op, inputs, outputs, n.attrs, n.loc)
        self.order[self._index(n)] = nn
        self.alive.discard(id(n))
        self.alive.add(id(nn))
        for o in nn.outputs:
            self.producers[o.name] = nn
        for i in set(n.inputs) | set(nn.inputs):
            if i:
                lst = self.user_lists.setdefault(i, [])
                lst[:] = [x for x in lst if x is not n]
                lst.extend(nn for j in nn.inputs if j == i)
        return nn

    def _settle_names(self, created: list[str]) -> None:
        """Values that got `hint_N` because the hint was taken by a node since removed take
        the hint after all: a refolded matmul keeps its old name, a folded weight the name of
        the weight it replaces when nothing else reads that one. Runs after each rewrite and,
        for what later rewrites freed, once more at the end."""
        inputs = {v.name for v in self.inputs}
        for name in created:
            hint = self._hints.get(name)
            if hint is None:
                continue
            if name == hint or (name not in self.consts and name not in self.producers):
                del self._hints[name]  # has its name, or is gone
                continue
            if hint in self.consts and not self.user_lists.get(hint) and not self.is_output(hint):
                del self.consts[hint]  # a constant the rewrites made unused (an old weight)
                self.types.pop(hint, None)
            if hint in self.producers or hint in self.consts or hint in inputs:
                continue  # still taken; a later rewrite may free it
            del self._hints[name]
            self._rename(name, hint, keep_users=True)

    def _rollback(self, created: list[str]) -> None:
        for name in reversed(created):
            self._hints.pop(name, None)
            if name in self.consts:
                del self.consts[name]
                self.types.pop(name, None)
            else:
                p = self.producers.get(name)
                if p is not None and id(p) in self.alive:
                    self._remove(p)

    def try_rule(self, rule: Rule, node: Node) -> bool:
        """Apply `rule` at `node` if it matches and its rewrite accepts; True if it changed."""
        if rule.pattern is None:
            matches: Iterable[Match] = (Match(node, {}, {}, (node,)),)
        else:
            matches = match_node(rule.pattern, node, self)
        for m in matches:
            if rule.exclusive and not exclusive(m, self):
                continue
            created: list[str] = []
            self._created, self._anchor, self._loc = created, node, node.loc
            try:
                result = rule.rewrite(m, self)
            except (ShapeError, UnsupportedTypeError):
                # The replacement does not type-check for these shapes: a case the rule's own
                # checks did not foresee. The graph is still right without it.
                result = None
            finally:
                self._created, self._anchor, self._loc = None, None, ""
            if result is None:
                self._rollback(created)
                continue
            if self._replace(rule, node, result, created):
                self._settle_names(created)
                return True
            self._rollback(created)
        return False

    def _replace(self, rule: Rule, node: Node, result: Replacement, created: list[str]) -> bool:
        results = (result,) if isinstance(result, str) else tuple(result)
        if result == DELETE:
            if not self.is_dead(node):
                raise VerifyError(f"rule {rule.name}: deleted {node.describe()}, which is used")
            self._remove(node)
            return True
        if len(results) != len(node.outputs):
            raise VerifyError(
                f"rule {rule.name}: {len(results)} replacements for {node.describe()}"
            )
        if all(r == o.name for r, o in zip(results, node.outputs)):
            return False
        # New values nothing reads yet take the old names; others are redirected to.
        new = {r for r in results if r in created and not self.user_lists.get(r)}
        for r, o in zip(results, node.outputs):
            t = self.types[r]
            if t.shape != o.type.shape or t.dtype != o.type.dtype:
                raise VerifyError(
                    f"rule {rule.name} replaced %{o.name}: {o.type} of {node.describe()} by "
                    f"%{r}: {t} (a rule must keep shapes and dtypes)"
                )
            if r not in new and self.is_output(o.name) and not self._renamable(r):
                return False  # the graph output would change its name
        fresh = [(r, o.name) for r, o in zip(results, node.outputs) if r in new]
        # An existing value replacing a graph output takes the output's name.
        moved = [
            (r, o.name)
            for r, o in zip(results, node.outputs)
            if r not in new and r != o.name and self.is_output(o.name)
        ]
        for r, o in zip(results, node.outputs):
            if r not in new and r != o.name:
                self._redirect(o.name, r)
        # The old node goes first so that its output names are free for the new values.
        self.alive.discard(id(node))
        del self.order[self._index(node)]
        for o in node.outputs:
            self.producers.pop(o.name, None)
        for i in node.inputs:
            if i:
                lst = self.user_lists.get(i, [])
                for k, u in enumerate(lst):
                    if u is node:
                        del lst[k]
                        break
        for r, old in fresh:
            self._rename(r, old)
        renamed = dict(moved)
        for r, old in moved:
            self._rename(r, old, keep_users=True)
        for i in node.inputs:
            p = self.producers.get(renamed.get(i, i)) if i else None
            if p is not None and self.is_dead(p):
                self._remove(p)
        return True

    def _renamable(self, value: str) -> bool:
        """Whether a node output may take another name (a graph output's, when it replaces
        that output): not a graph input, constant or graph output itself."""
        return value in self.producers and not self.is_output(value)

    def graph(self) -> Graph:
        self._settle_names(list(self._hints))
        used = {i for n in self.order for i in n.inputs if i} | set(self.outputs)
        consts = tuple(c for name, c in self.consts.items() if name in used)
        return Graph(self.name, self.inputs, tuple(self.outputs), tuple(self.order), consts)


def apply_rules(
    graph: Graph,
    rules: Sequence[Rule],
    *,
    options: Mapping[str, Any] | None = None,
    max_rounds: int = 64,
) -> tuple[Graph, dict[str, int]]:
    """Rewrite `graph` with `rules` to a fixpoint; returns it and how often each rule fired.
    `options` are visible to rules as `Rewriter.options`."""
    by_op: dict[str | None, list[Rule]] = {}
    for r in rules:
        ops = root_ops(r.pattern) if r.pattern is not None else None
        for o in ops if ops is not None else (None,):
            by_op.setdefault(o, []).append(r)
    rank = {r.name: k for k, r in enumerate(rules)}
    per_op: dict[str, list[Rule]] = {}  # rules to try at a node of this op, in table order

    def candidates(op: str) -> list[Rule]:
        if op not in per_op:
            found = by_op.get(op, []) + by_op.get(None, [])
            per_op[op] = sorted(found, key=lambda r: rank[r.name])
        return per_op[op]

    fired: dict[str, int] = {}
    rw = Rewriter(graph, options)
    for _ in range(max_rounds):
        rw.memo.clear()
        changed = False
        for node in list(rw.order):
            if id(node) not in rw.alive:
                continue
            for rule in candidates(node.op):
                if rw.try_rule(rule, node):
                    fired[rule.name] = fired.get(rule.name, 0) + 1
                    changed = True
                    break
        if not changed:
            break
    else:
        raise VerifyError(f"rewrite rules did not reach a fixpoint in {max_rounds} rounds: {fired}")
    if not fired:
        return graph, fired
    return rw.graph(), fired
