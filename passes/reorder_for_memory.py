"""reorder-for-memory: reorder graph nodes, within the freedom the dataflow leaves, so that fewer
temporaries are live at once; plan-memory then fits them into a smaller workspace.

A graph's node order is one topological order among many, and the peak of simultaneously live
bytes depends on it: on a block with two branches, finishing one branch (and freeing its big
intermediates) before starting the other can halve the peak. The pass schedules greedily: among
the nodes whose inputs are ready, run the one that allocates the least minus what it frees
(ties: the earlier node in the current order, so the pass is stable). The result is kept only
when its peak is strictly lower than the current order's, so the pass never makes a graph worse
and leaves one it cannot improve unchanged (which also makes it idempotent in practice).

The memory model is lower-to-loops' and plan-memory's: every output of a non-view node is a
workspace temporary (64-byte aligned), except graph outputs the caller's buffer receives
directly; views (reshape) alias their input's bytes and extend its lifetime; graph inputs and
constants cost nothing; a temporary lives from its producer to its last reader, both included;
graph outputs that need a copy launch live to the end. Results are bit-identical: every node
still runs after its inputs, with the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelc.errors import Error
from modelc.ir.graph import Graph, Node
from modelc.ir.loop import Schedule
from modelc.ir.opdef import VIEW, LowerRequest, get_op
from modelc.ir.program import align
from modelc.passes.plan_memory_inplace import inplace_pairs
from modelc.passes.registry import GRAPH, Pass, PassContext, register_pass


@register_pass
@dataclass(frozen=True)
class ReorderForMemory(Pass):
    name = "reorder-for-memory"
    level = GRAPH
    produces = GRAPH

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        model = LiveModel(graph)
        before = model.peak(graph.nodes)
        order = model.greedy()
        after = model.peak(order)
        ctx.report(self.name, peak_before_bytes=before, peak_after_bytes=min(before, after))
        if after < before:
            return graph.replace(nodes=tuple(order))
        return graph


class LiveModel:
    """Sizes, roots and readers of a graph's temporaries, to score node orders."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.nodes = graph.nodes
        self.position = {id(n): i for i, n in enumerate(graph.nodes)}
        producers = graph.producers
        self.root: dict[str, str] = {}
        self.is_view = [get_op(n.op).has(VIEW) for n in graph.nodes]
        for n, view in zip(graph.nodes, self.is_view):
            for o in n.outputs:
                self.root[o.name] = self.root.get(n.inputs[0], n.inputs[0]) if view else o.name
        direct = _direct_outputs(graph)
        # Temporaries: roots that are node outputs (not inputs/constants) the caller's buffers
        # do not receive directly.
        self.size: dict[str, int] = {}
        for n, view in zip(graph.nodes, self.is_view):
            if view:
                continue
            for o in n.outputs:
                if o.name not in direct:
                    self.size[o.name] = align(o.type.nbytes)
        # Roots a copy launch reads after every node: live to the end.
        self.pinned = {self.root.get(o, o) for o in graph.outputs if o not in direct}
        # Per node: the distinct temporary roots it reads (views do not read), the nodes that
        # must run first, and the roots its kernel may overwrite in place (as plan-memory will).
        self.reads: list[tuple[str, ...]] = []
        self.deps: list[set[int]] = []
        self.inplace: list[tuple[str, ...]] = []
        for n, view in zip(graph.nodes, self.is_view):
            roots = [self.root.get(i, i) for i in n.inputs if i]
            self.reads.append(() if view else tuple(sorted({r for r in roots if r in self.size})))
            self.deps.append(
                {self.position[id(producers[i])] for i in n.inputs if i and i in producers}
            )
            self.inplace.append(() if view else self._inplace_roots(n, roots))

    def _inplace_roots(self, n: Node, roots: list[str]) -> tuple[str, ...]:
        """Temporary roots of inputs that this node's kernel provably may overwrite with an
        output (the check plan-memory makes; lowering a node costs microseconds)."""
        present = [i for i in n.inputs if i]
        if not any(self.g.types[i] == o.type for i in present for o in n.outputs):
            return ()
        opdef = get_op(n.op)
        if opdef.lower is None:
            return ()
        req = LowerRequest(
            node=n,
            in_types=tuple(self.g.types[i] for i in present),
            out_types=tuple(o.type for o in n.outputs),
            schedule=Schedule(),
            kernel_name="k",
        )
        try:
            kernel = opdef.lower(req)
        except Error:
            return ()
        out: list[str] = []
        for pi, qi in inplace_pairs(kernel):
            r, written = roots[pi], n.outputs[qi - len(present)].name
            # Both in the workspace (not the caller's output buffer), the input passed once.
            if r in self.size and written in self.size and roots.count(r) == 1:
                out.append(r)
        return tuple(out)

    def _uses(self) -> dict[str, int]:
        uses = dict.fromkeys(self.size, 0)
        for reads in self.reads:
            for r in reads:
                uses[r] += 1
        return uses

    def _allocs(self, n: Node, k: int) -> int:
        if self.is_view[k]:
            return 0
        return sum(self.size.get(o.name, 0) for o in n.outputs)

    def peak(self, order: tuple[Node, ...] | list[Node]) -> int:
        """The largest total of live temporaries while running `order`."""
        uses = self._uses()
        live = peak = 0
        for n in order:
            k = self.position[id(n)]
            # An input overwritten in place hands its bytes to the output before the peak.
            handed = sum(self.size[r] for r in self.inplace[k] if self._dies(r, uses))
            live += self._allocs(n, k) - handed
            peak = max(peak, live)
            for r in self.reads[k]:
                uses[r] -= 1
                if uses[r] == 0 and r not in self.pinned and r not in self.inplace[k]:
                    live -= self.size[r]
            live -= self._unread(n, k, uses)
        return peak

    def _dies(self, root: str, uses: dict[str, int]) -> bool:
        """Whether the node about to run is the last reader of `root`."""
        return uses[root] == 1 and root not in self.pinned

    def _unread(self, n: Node, k: int, uses: dict[str, int]) -> int:
        """Bytes of this node's outputs nobody reads (dead values die at once)."""
        if self.is_view[k]:
            return 0
        return sum(
            self.size[o.name]
            for o in n.outputs
            if o.name in self.size and uses[o.name] == 0 and o.name not in self.pinned
        )

    def greedy(self) -> list[Node]:
        """Topological order that picks, among ready nodes, the smallest net allocation."""
        uses = self._uses()
        waiting = [len(d) for d in self.deps]
        users: list[list[int]] = [[] for _ in self.nodes]
        for k, deps in enumerate(self.deps):
            for d in deps:
                users[d].append(k)
        ready = {k for k, w in enumerate(waiting) if w == 0}
        order: list[Node] = []
        while ready:

            def net(k: int) -> tuple[int, int]:
                freed = sum(self.size[r] for r in self.reads[k] if self._dies(r, uses))
                return self._allocs(self.nodes[k], k) - freed, k

            k = min(ready, key=net)
            ready.discard(k)
            order.append(self.nodes[k])
            for r in self.reads[k]:
                uses[r] -= 1
            for u in users[k]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    ready.add(u)
        return order


def _direct_outputs(graph: Graph) -> set[str]:
    """Graph outputs a kernel writes straight into the caller's buffer (as lower-to-loops
    decides): produced by a non-view node and listed once."""
    counts: dict[str, int] = {}
    for o in graph.outputs:
        counts[o] = counts.get(o, 0) + 1
    producers = graph.producers
    return {
        o
        for o, c in counts.items()
        if c == 1 and o in producers and not get_op(producers[o].op).has(VIEW)
    }
