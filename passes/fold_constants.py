"""fold-constants: evaluate nodes whose inputs are all constants at compile time.

Frontends already fold while importing; this pass does it again after other passes have made
new constant subgraphs (e.g. a transposed weight, a BN folded into a conv). Results come from
each op's numpy reference implementation, the same semantics the interpreter defines.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelc.ir.graph import Constant, Graph, Node, make_constant
from modelc.ir.opdef import get_op
from modelc.passes.registry import Pass, PassContext, register_pass


@register_pass
@dataclass(frozen=True)
class FoldConstants(Pass):
    name = "fold-constants"
    # Do not materialize folded results larger than this (an expand of a scalar to a huge tensor
    # is cheaper to compute at run time than to store in the library).
    max_bytes: int = 1 << 30

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        consts: dict[str, Constant] = dict(graph.constant_map)
        nodes: list[Node] = []
        folded = 0
        for n in graph.nodes:
            opdef = get_op(n.op)
            inputs_const = all((not i) or i in consts for i in n.inputs)
            too_big = sum(o.type.nbytes for o in n.outputs) > self.max_bytes
            if opdef.foldable and inputs_const and not too_big:
                arrays = [consts[i].data if i else None for i in n.inputs]
                results = opdef.evaluate(arrays, n.attrs, [o.type for o in n.outputs])
                for o, r in zip(n.outputs, results):
                    consts[o.name] = make_constant(o.name, r, o.type)
                folded += 1
            else:
                nodes.append(n)
        if not folded:
            return graph
        ctx.report(self.name, folded=folded)
        used = {i for n in nodes for i in n.inputs} | set(graph.outputs)
        kept = tuple(c for name, c in consts.items() if name in used)
        return graph.replace(nodes=tuple(nodes), constants=kept)
