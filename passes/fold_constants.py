"""fold-constants: evaluate nodes whose inputs are all constants at compile time.

Frontends already fold while importing; this pass does it again after other passes have made
new constant subgraphs (e.g. a transposed weight, a BN folded into a conv). Results come from
each op's numpy reference implementation, the same semantics the interpreter defines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from modelc.ir.graph import Constant, Graph, Node, make_constant
from modelc.ir.opdef import get_op
from modelc.passes.registry import Pass, PassContext, register_pass

# Folded results larger than this stay computed at run time (see FoldConstants.max_bytes).
DEFAULT_MAX_BYTES = 1 << 30


def fold_node(
    node: Node, constants: Mapping[str, np.ndarray], max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[np.ndarray, ...] | None:
    """The outputs of `node` evaluated at compile time, or None when it cannot or should not
    be folded (an input is not a constant, the op is not foldable, the result is too big).
    Shared with canonicalize, so both fold with the same rules."""
    opdef = get_op(node.op)
    if not opdef.foldable or not all((not i) or i in constants for i in node.inputs):
        return None
    if sum(o.type.nbytes for o in node.outputs) > max_bytes:
        return None
    arrays = [constants[i] if i else None for i in node.inputs]
    return opdef.evaluate(arrays, node.attrs, [o.type for o in node.outputs])


@register_pass
@dataclass(frozen=True)
class FoldConstants(Pass):
    name = "fold-constants"
    # Do not materialize folded results larger than this (an expand of a scalar to a huge tensor
    # is cheaper to compute at run time than to store in the library).
    max_bytes: int = DEFAULT_MAX_BYTES

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        consts: dict[str, Constant] = dict(graph.constant_map)
        arrays: dict[str, np.ndarray] = {k: c.data for k, c in consts.items()}
        nodes: list[Node] = []
        folded = 0
        for n in graph.nodes:
            results = fold_node(n, arrays, self.max_bytes)
            if results is not None:
                for o, r in zip(n.outputs, results):
                    arrays[o.name] = r
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
