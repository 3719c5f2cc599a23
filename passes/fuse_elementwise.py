"""fuse-elementwise: merge chains and trees of elementwise ops into one kernel each.

TVM's rule, run consumer-first: walking the graph backwards, an elementwise/broadcast op (any op
with the elementwise trait and a scalar expression: arithmetic, comparisons, cast, where, clip,
activations) joins the group of one of its users when

- it has the group's element count (every value of a group is computed once per output
  element; a smaller value that broadcasts into the group, e.g. a per-channel scale computed
  at run time, stays a separate kernel and is read as an input),
- broadcasting stays simple: all nodes of a group that read a broadcast operand have one
  shape, the shape the lowered loop nest runs over, so no index needs a division;
- and it does not create a cycle (below).

A value used outside its group, or a graph output, does not end the group: it becomes one more
output of the fused node (`multi_output=true`, the default), written by the same kernel, as long
as no path leads from that outside user back into the group (checked on the graph of groups,
since a fused node runs as a unit). With `multi_output=false` such a value ends the group.

Reductions, conv, matmul, pools and other non-elementwise ops end groups, so two reductions
never share one. Views (reshape) join a group only inside it, when every user of the view is in
the group and it is no graph output: the element order is unchanged, the flat index carries
over. A group of one compute op stays as it is. Fused nodes are OPAQUE: a second run finds
nothing to do (idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass

from modelc.ir.graph import Graph
from modelc.ir.opdef import VIEW, get_op
from modelc.ir.ops.fused import is_pointwise
from modelc.passes.fusion import Group, fuse_groups, group_outputs
from modelc.passes.registry import Pass, PassContext, register_pass

COMPUTE, GLUE = "compute", "glue"


@register_pass
@dataclass(frozen=True)
class FuseElementwise(Pass):
    name = "fuse-elementwise"
    multi_output: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        groups = _Grouping(graph, self.multi_output).run()
        if not groups:
            return graph
        ctx.report(
            self.name,
            groups=len(groups),
            nodes_fused=sum(len(g.members) for g in groups),
            kernels_saved=sum(len(g.members) for g in groups) - len(groups),
        )
        return fuse_groups(graph, groups)


@dataclass
class _Group:
    size: int  # element count of every value in the group
    members: list[int]
    domain: tuple[int, ...] | None = None  # shape of the nodes that read broadcast operands


class _Grouping:
    """Consumer-first grouping over node indices."""

    def __init__(self, graph: Graph, multi_output: bool) -> None:
        self.g = graph
        self.multi_output = multi_output
        nodes = graph.nodes
        index = {o.name: k for k, n in enumerate(nodes) for o in n.outputs}
        self.users: list[list[int]] = [[] for _ in nodes]
        for k, n in enumerate(nodes):
            for i in dict.fromkeys(n.inputs):
                if i in index:
                    self.users[index[i]].append(k)
        self.group_of: list[int | None] = [None] * len(nodes)
        self.groups: list[_Group] = []
        self.finals = set(graph.outputs)

    def role(self, k: int) -> str | None:
        n = self.g.nodes[k]
        if is_pointwise(n):
            return COMPUTE
        if get_op(n.op).has(VIEW) and len(n.outputs) == 1:
            return GLUE
        return None

    def run(self) -> list[Group]:
        for k in reversed(range(len(self.g.nodes))):
            role = self.role(k)
            if role is None:
                continue
            tried: list[int] = []
            for u in self.users[k]:
                gid = self.group_of[u]
                if gid is not None and gid not in tried:
                    tried.append(gid)
            if not any(self.try_join(k, role, gid) for gid in tried) and role == COMPUTE:
                self.group_of[k] = len(self.groups)
                self.groups.append(_Group(self.g.nodes[k].outputs[0].type.size, [k]))
                self.groups[-1].domain = self.domain_need(k)
        out = []
        for grp in self.groups:
            computes = [k for k in grp.members if self.role(k) == COMPUTE]
            if len(computes) >= 2:
                members = tuple(sorted(grp.members))
                out.append(Group("elementwise", members, group_outputs(self.g, members)))
        return out

    def domain_need(self, k: int) -> tuple[int, ...] | None:
        """The node's shape if it reads an operand that broadcasts (fewer elements), else None."""
        n = self.g.nodes[k]
        size = n.outputs[0].type.size
        types = self.g.types
        if any(i and types[i].size != size for i in n.inputs):
            return n.outputs[0].type.shape
        return None

    def try_join(self, k: int, role: str, gid: int) -> bool:
        grp = self.groups[gid]
        out = self.g.nodes[k].outputs[0]
        if out.type.size != grp.size:
            return False
        need = self.domain_need(k) if role == COMPUTE else None
        if need is not None and grp.domain not in (None, need):
            return False
        outside = [u for u in self.users[k] if self.group_of[u] != gid]
        if outside or out.name in self.finals:
            if role == GLUE or not self.multi_output:
                return False
            if any(self.reaches(u, gid) for u in outside):
                return False
        self.group_of[k] = gid
        grp.members.append(k)
        if need is not None:
            grp.domain = need
        return True

    def reaches(self, start: int, gid: int) -> bool:
        """Whether node `start` leads to group `gid` in the graph of groups (a group runs as one
        node, so reaching any member reaches all of them and everything they feed)."""
        seen: set[int] = set()
        stack = [start]
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            gv = self.group_of[v]
            if gv == gid:
                return True
            unit = self.groups[gv].members if gv is not None else [v]
            for m in unit:
                seen.add(m)
                stack.extend(self.users[m])
        return False
