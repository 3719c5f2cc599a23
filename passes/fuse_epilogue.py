"""fuse-epilogue: finish conv/matmul outputs in the same kernel that computes them.

An anchor (an out-fusable op whose lowering applies `LowerRequest.epilogue`: conv, matmul) and
the elementwise ops after it become one `fused{kind="epilogue"}` node: bias add (broadcast per
channel or per column), scale, activation (relu, clip/ReLU6, hard_swish, sigmoid, gelu, silu,
leaky_relu, ...), residual add and the activation after it. The anchor's lowering then applies
them to each output plane or row right after its accumulation completes, while it is in cache:
no second kernel, no second trip through memory.

The group grows forward from the anchor, one user at a time in graph order, and is kept at the
last point where exactly one of its values is read outside it (or is a graph output): every
value before that is only read inside, so nothing else needs the anchor's raw output, and
diamonds like `y * sigmoid(y)` fuse too. Epilogue ops must keep the anchor's shape and dtype
(they finish its output buffer in place). Operands from outside (bias, residual) may be
defined anywhere before the last member: the fused node takes that member's place, which keeps
SSA order; no operand can depend on the group, because only the final value leaves it.

Option `act`: which activations may fuse: `all` (default: any elementwise op), `none`, or a
comma list of op names (`fuse-epilogue{act=relu,clip}`). Bias, scale and residual arithmetic
(add, sub, mul, div) always fuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelc.errors import PipelineError
from modelc.ir import loop as L
from modelc.ir.graph import Graph, Node
from modelc.ir.loop import Expr, Schedule, Stmt
from modelc.ir.opdef import ELEMENTWISE, OUT_FUSABLE, LowerRequest, all_ops, get_op
from modelc.ir.ops.fused import is_pointwise
from modelc.passes.fusion import Group, fuse_groups
from modelc.passes.registry import Pass, PassContext, register_pass

ARITHMETIC = frozenset({"add", "sub", "mul", "div"})
# More open values than this and the group cannot come back to one: stop growing.
MAX_OPEN = 4


def honors_epilogue(graph: Graph, node: Node) -> bool:
    """Whether `node` is an anchor: out-fusable, one output, and a lowering that really calls
    the epilogue hook (tried once on the node; an op that is marked out-fusable but does not
    apply epilogues yet is left alone instead of miscompiled)."""
    opdef = get_op(node.op)
    if not opdef.has(OUT_FUSABLE) or opdef.lower is None or len(node.outputs) != 1:
        return False
    called: list[bool] = []

    def probe(flat: Expr, dims: object, acc: Expr) -> Stmt:
        called.append(True)
        return L.Store("out0", flat, acc)

    present = [i for i in node.inputs if i]
    req = LowerRequest(
        node,
        tuple(graph.types[i] for i in present),
        (node.output.type,),
        Schedule(),
        "probe",
        probe,
    )
    try:
        opdef.lower(req)
    except Exception:  # whatever stops the probe stops the real lowering too: not an anchor
        return False
    return bool(called)


@register_pass
@dataclass(frozen=True)
class FuseEpilogue(Pass):
    name = "fuse-epilogue"
    act: str = "all"

    def __post_init__(self) -> None:
        self.activations()  # reject unknown names when the pipeline is parsed

    def activations(self) -> frozenset[str] | None:
        """The activations allowed by `act`; None means every elementwise op."""
        text = self.act.strip()
        if text == "all":
            return None
        if text == "none":
            return frozenset()
        names = frozenset(s.strip() for s in text.split(",") if s.strip())
        ops = all_ops()
        bad = sorted(
            n for n in names if n not in ops or ops[n].scalar is None or not ops[n].has(ELEMENTWISE)
        )
        if bad:
            raise PipelineError(
                f"fuse-epilogue: act lists {bad}, which are not elementwise ops; use 'all', "
                "'none' or a comma list like act=relu,clip,sigmoid"
            )
        return names

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        acts = self.activations()
        claimed: set[int] = set()
        groups: list[Group] = []
        index = {o.name: k for k, n in enumerate(graph.nodes) for o in n.outputs}
        for k, n in enumerate(graph.nodes):
            if not get_op(n.op).has(OUT_FUSABLE) or len(n.outputs) != 1:
                continue
            members = _grow(graph, index, k, claimed, acts)
            if len(members) > 1 and honors_epilogue(graph, n):
                claimed.update(members)
                final = graph.nodes[members[-1]].output.name
                keep = frozenset(i for i in n.inputs if i)
                groups.append(Group("epilogue", tuple(members), (final,), keep))
        if not groups:
            return graph
        ctx.report(
            self.name,
            groups=len(groups),
            nodes_fused=sum(len(g.members) - 1 for g in groups),
        )
        return fuse_groups(graph, groups)


def _grow(
    graph: Graph,
    index: dict[str, int],
    anchor: int,
    claimed: set[int],
    acts: frozenset[str] | None,
) -> list[int]:
    """The anchor and its epilogue, in graph order: the longest growth whose only value read
    outside (or returned) is its last one. Just the anchor when nothing fuses."""
    nodes = graph.nodes
    want = nodes[anchor].output.type
    finals = set(graph.outputs)
    members = [anchor]
    inside = {nodes[anchor].output.name}
    best = [anchor]

    def allowed(n: Node) -> bool:
        if not is_pointwise(n) or n.output.type.shape != want.shape:
            return False
        if n.output.type.dtype != want.dtype:
            return False
        return acts is None or n.op in ARITHMETIC or n.op in acts

    while True:
        frontier = sorted(
            {index[u.outputs[0].name] for v in inside for u in graph.users.get(v, ()) if u.outputs}
            - set(members)
        )
        nxt = next(
            (u for u in frontier if u not in claimed and allowed(nodes[u])),
            None,
        )
        if nxt is None:
            return best
        members.append(nxt)
        inside.add(nodes[nxt].output.name)
        open_ = [
            v
            for v in inside
            if v in finals
            or any(u.outputs[0].name not in inside for u in graph.users.get(v, ()) if u.outputs)
        ]
        if open_ == [nodes[nxt].output.name]:
            best = list(members)
        elif len(open_) > MAX_OPEN:
            return best
