"""Shared by the fusion passes (`fuse-epilogue`, `fuse-elementwise`): turning chosen groups of
nodes into `fused` nodes (see `ir/ops/fused.py`) and putting the graph back in order.

The passes decide *which* nodes form a group; this module does the rest the same way for both:
the body graph (external inputs in first-use order, single-element constants moved inside as
literals), the fused node, and a topological re-scheduling of the graph. A fused node takes the
place of its last member; when a group's inputs are computed later than that place (a member
reads a value defined after an earlier member), a stable topological sort moves nodes just as
far as the dependencies require, so the result is always in SSA order.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from modelc.errors import VerifyError
from modelc.ir.attrs import Attrs
from modelc.ir.graph import Constant, Graph, Node, Value, make_constant
from modelc.ir.ops.fused import body_name


@dataclass(frozen=True)
class Group:
    """Nodes to fuse: `members` are indices into `graph.nodes` (any order); `outputs` the member
    values the rest of the graph reads, in the order the fused node lists them; inputs in
    `keep_inputs` stay inputs even when they are single-element constants (an anchor reads
    its operands from buffers)."""

    kind: str
    members: tuple[int, ...]
    outputs: tuple[str, ...]
    keep_inputs: frozenset[str] = field(default_factory=frozenset)


def group_outputs(graph: Graph, members: Collection[int]) -> tuple[str, ...]:
    """Member values that a non-member reads or that are graph outputs, in member order."""
    member_nodes = [graph.nodes[k] for k in sorted(members)]
    inside = {o.name for n in member_nodes for o in n.outputs}
    finals = set(graph.outputs)

    def outside(u: Node) -> bool:
        return not any(o.name in inside for o in u.outputs)

    return tuple(
        o.name
        for n in member_nodes
        for o in n.outputs
        if o.name in finals or any(outside(u) for u in graph.users.get(o.name, ()))
    )


def make_fused(graph: Graph, group: Group) -> Node:
    """The `fused` node of `group`: its body is the members as a graph of their own."""
    members = [graph.nodes[k] for k in sorted(group.members)]
    produced = {o.name for n in members for o in n.outputs}
    inputs: list[str] = []
    inlined: list[Constant] = []
    for n in members:
        for i in n.inputs:
            if not i or i in produced or i in inputs or any(c.name == i for c in inlined):
                continue
            c = graph.constant_map.get(i)
            if c is not None and c.data.size == 1 and i not in group.keep_inputs:
                inlined.append(make_constant(c.name, c.data, c.value.type))
            else:
                inputs.append(i)
    types = graph.types
    body = Graph(
        body_name([n.op for n in members]),
        tuple(Value(i, types[i]) for i in inputs),
        group.outputs,
        tuple(members),
        tuple(inlined),
    )
    loc = "+".join(n.loc for n in members if n.loc)
    outs = tuple(Value(o, types[o]) for o in group.outputs)
    return Node("fused", tuple(inputs), outs, Attrs(kind=group.kind, body=body), loc)


def fuse_groups(graph: Graph, groups: Sequence[Group]) -> Graph:
    """`graph` with every group replaced by its fused node, in a topological order that keeps
    the original one wherever the dependencies allow. Constants only the fused bodies read
    (now literals inside them) are dropped from the graph."""
    nodes = graph.nodes
    unit_of: dict[int, int] = {}  # node index -> unit index
    units: list[tuple[int, Node]] = []  # (position key, node)
    for g in groups:
        u = len(units)
        units.append((max(g.members), make_fused(graph, g)))
        for k in g.members:
            if k in unit_of:
                raise VerifyError(f"fusion: {nodes[k].describe()} is in two groups")
            unit_of[k] = u
    for k, n in enumerate(nodes):
        if k not in unit_of:
            unit_of[k] = len(units)
            units.append((k, n))

    producer = {o.name: u for u, (_, n) in enumerate(units) for o in n.outputs}
    deps: list[set[int]] = [set() for _ in units]
    users: list[list[int]] = [[] for _ in units]
    for u, (_, n) in enumerate(units):
        for i in n.inputs:
            p = producer.get(i)
            if p is not None and p != u and p not in deps[u]:
                deps[u].add(p)
                users[p].append(u)
    waiting = [len(d) for d in deps]
    ready = [(units[u][0], u) for u in range(len(units)) if not waiting[u]]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        _, u = heapq.heappop(ready)
        order.append(units[u][1])
        for w in users[u]:
            waiting[w] -= 1
            if not waiting[w]:
                heapq.heappush(ready, (units[w][0], w))
    if len(order) != len(units):
        raise VerifyError("fusion: the chosen groups depend on each other in a cycle (a bug)")

    used = {i for n in order for i in n.inputs} | set(graph.outputs)
    constants = tuple(c for c in graph.constants if c.name in used)
    return graph.replace(nodes=tuple(order), constants=constants)
