"""lower-to-loops: graph (level 1) -> program of loop-IR kernels (level 2).

Each node lowers through its OpDef's lowering with the target's schedule. View ops (reshape)
launch nothing: their output aliases the input's bytes. Structurally identical kernels (same
shapes and attributes; weights are parameters) are emitted once and launched many times, which
keeps generated code small and compile times short on deep networks.

A graph output that the caller's buffer cannot simply receive (an input, a constant, a view, or
the same value listed twice) gets an explicit copy launch into its own output buffer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from modelc.errors import UnsupportedOpError
from modelc.ir.graph import Graph, Node, Value
from modelc.ir.loop import Kernel, Schedule
from modelc.ir.opdef import VIEW, LowerRequest, get_op
from modelc.ir.program import CONSTANT, INPUT, OUTPUT, TEMP, Buffer, Launch, Program
from modelc.passes.registry import GRAPH, PROGRAM, Pass, PassContext, register_pass


@register_pass
@dataclass(frozen=True)
class LowerToLoops(Pass):
    name = "lower-to-loops"
    level = GRAPH
    produces = PROGRAM
    parallel: bool = True
    vectorize: bool = True
    dedupe: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> Program:
        schedule = Schedule(parallel=self.parallel, vectorize=self.vectorize)
        return _Lowering(graph, schedule, self.dedupe).run(ctx)


class _Lowering:
    def __init__(self, graph: Graph, schedule: Schedule, dedupe: bool) -> None:
        self.g = graph
        self.schedule = schedule
        self.dedupe = dedupe
        self.buffers: dict[str, Buffer] = {}
        self.kernels: list[Kernel] = []
        self.by_body: dict[Kernel, str] = {}
        self.launches: list[Launch] = []

    def run(self, ctx: PassContext) -> Program:
        g = self.g
        direct_outputs = self._direct_outputs()
        for v in g.inputs:
            self._buffer(v, INPUT)
        for c in g.constants:
            self._buffer(c.value, CONSTANT)
        for idx, n in enumerate(g.nodes):
            opdef = get_op(n.op)
            if opdef.has(VIEW):
                src = self.buffers[n.inputs[0]]
                root = src.alias_of or src.name
                self._buffer(n.output, TEMP, alias_of=root)
                continue
            for o in n.outputs:
                self._buffer(o, OUTPUT if o.name in direct_outputs else TEMP)
            self._launch(n, idx)
        out_buffers = []
        for k, o in enumerate(g.outputs):
            if o in direct_outputs and direct_outputs[o] == k:
                out_buffers.append(o)
            else:
                out_buffers.append(self._copy_out(o, k))
        constants = {c.name: c.data for c in g.constants}
        ctx.report(
            "lower-to-loops",
            kernels=len(self.kernels),
            launches=len(self.launches),
            views=sum(1 for b in self.buffers.values() if b.alias_of),
        )
        return Program(
            name=g.name,
            kernels=tuple(self.kernels),
            launches=tuple(self.launches),
            buffers=tuple(self.buffers.values()),
            inputs=tuple(v.name for v in g.inputs),
            outputs=tuple(out_buffers),
            constants=constants,
            output_names=tuple(g.outputs),
        )

    def _direct_outputs(self) -> dict[str, int]:
        """Graph outputs a kernel can write straight into: produced by a non-view node, listed
        once. Maps name -> position in the output list."""
        g = self.g
        out: dict[str, int] = {}
        seen: set[str] = set()
        for k, o in enumerate(g.outputs):
            p = g.producers.get(o)
            if o in seen:
                out.pop(o, None)
            elif p is not None and not get_op(p.op).has(VIEW):
                out[o] = k
            seen.add(o)
        return out

    def _buffer(self, v: Value, kind: str, alias_of: str | None = None) -> None:
        self.buffers[v.name] = Buffer(v.name, v.type.dtype, v.type.shape, kind, alias_of)

    def _kernel(self, kernel: Kernel) -> str:
        """Register `kernel`, reusing an identical one; returns the name to launch."""
        if not self.dedupe:
            self.kernels.append(kernel)
            return kernel.name
        key = dataclasses.replace(kernel, name="")
        name = self.by_body.get(key)
        if name is None:
            name = kernel.name
            self.by_body[key] = name
            self.kernels.append(kernel)
        return name

    def _launch(self, n: Node, idx: int) -> None:
        opdef = get_op(n.op)
        if opdef.lower is None:
            raise UnsupportedOpError(
                f"{n.describe()}: op {n.op} has no lowering to loops yet; "
                "it cannot be compiled for this target"
            )
        present = [i for i in n.inputs if i]
        req = LowerRequest(
            node=n,
            in_types=tuple(self.g.types[i] for i in present),
            out_types=tuple(o.type for o in n.outputs),
            schedule=self.schedule,
            kernel_name=f"k{len(self.kernels)}_{n.op}",
        )
        name = self._kernel(opdef.lower(req))
        args = tuple(present) + tuple(o.name for o in n.outputs)
        self.launches.append(Launch(name, args, (n.loc or f"{n.op}#{idx}",), n.op))

    def _copy_out(self, value: str, position: int) -> str:
        t = self.g.types[value]
        dst = f"{value}.out{position}"
        self.buffers[dst] = Buffer(dst, t.dtype, t.shape, OUTPUT)
        node = Node("copy", (value,), (Value(dst, t),), loc=f"copy to output {value}")
        req = LowerRequest(node, (t,), (t,), self.schedule, f"k{len(self.kernels)}_copy")
        name = self._kernel(get_op("copy").lower(req))  # type: ignore[misc]
        self.launches.append(Launch(name, (value, dst), (node.loc,), "copy"))
        return dst
