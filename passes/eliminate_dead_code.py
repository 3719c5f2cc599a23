"""eliminate-dead-code: drop nodes and constants that no graph output depends on."""

from __future__ import annotations

from dataclasses import dataclass

from modelc.ir.graph import Graph
from modelc.passes.registry import Pass, PassContext, register_pass


@register_pass
@dataclass(frozen=True)
class EliminateDeadCode(Pass):
    name = "eliminate-dead-code"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        live = set(graph.outputs)
        keep = []
        for n in reversed(graph.nodes):
            if any(o.name in live for o in n.outputs):
                keep.append(n)
                live.update(i for i in n.inputs if i)
        keep.reverse()
        consts = tuple(c for c in graph.constants if c.name in live)
        removed = len(graph.nodes) - len(keep)
        if removed == 0 and len(consts) == len(graph.constants):
            return graph
        ctx.report(self.name, nodes_removed=removed)
        return graph.replace(nodes=tuple(keep), constants=consts)
