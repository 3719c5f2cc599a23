"""The `fused` op: a group of graph nodes that runs as one kernel.

Fusion passes (`fuse-epilogue`, `fuse-elementwise`) replace a group of nodes by one node whose
`body` attribute is the group itself, as a nested graph:

    %y: f32[1,8,4,4] = fused(%x, %w, %b, %r) {kind="epilogue",
        body=graph @conv_add_relu(%x: ..., %w: ..., %b: ..., %r: ...) -> (%y) {
      %c: f32[1,8,4,4] = conv(%x, %w, %b) {...}
      %s: f32[1,8,4,4] = add(%c, %r)
      %y: f32[1,8,4,4] = relu(%s)
      return %y
    }}

Why a nested graph and not a side table: the group stays visible in the text form (it prints,
parses and verifies like any graph), its semantics need no new code (the reference runs the
body through the interpreter), and later passes can still read the ops inside.

Rules of a body:
- its inputs are the node's inputs, in order (the group's external values); its outputs are the
  node's outputs. Values keep the names they had in the enclosing graph, so the text reads like
  the group did before fusion (a body is a scope of its own: the names do not clash);
- only single-element constants live in the body: they become literals in the kernel. Larger
  constants are inputs, because kernels take data as buffers;
- `kind` says how the group lowers (`FUSED_KINDS`, a registry, not an if-chain):
  - `elementwise`: elementwise/broadcast ops (and views gluing them) with equal element
    counts, lowered to one loop over the output composing the ops' scalar expressions;
  - `epilogue`: an OUT_FUSABLE anchor (conv, matmul) followed by elementwise ops of the
    anchor's shape and dtype, lowered by the anchor with the rest applied per output element
    once it is final (`LowerRequest.epilogue`).

The op itself carries the OPAQUE trait: a fused group is final, fusion passes never grow or
merge it, which is what makes them idempotent. `kind_traits` says what the group computes, for
passes that want to know (an elementwise group is elementwise, an epilogue group out-fusable).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from modelc.errors import ShapeError
from modelc.ir.attrs import Attrs
from modelc.ir.graph import Graph, Node
from modelc.ir.loop import Kernel
from modelc.ir.opdef import (
    BROADCAST,
    ELEMENTWISE,
    OPAQUE,
    OUT_FUSABLE,
    VIEW,
    AttrSpec,
    LowerRequest,
    OpDef,
    get_op,
    register_op,
)
from modelc.ir.ops.fused_lower import lower_elementwise, lower_epilogue
from modelc.ir.printer import format_type
from modelc.ir.types import TensorType


@dataclass(frozen=True)
class FusedKind:
    """How one kind of fused group is checked, described and lowered."""

    name: str
    traits: frozenset[str]
    check: Callable[[Graph], None]  # raises ShapeError when the body does not fit the kind
    lower: Callable[[LowerRequest], Kernel]


def is_pointwise(node: Node) -> bool:
    """An elementwise op with a scalar expression: what fused bodies compose."""
    opdef = get_op(node.op)
    return opdef.has(ELEMENTWISE) and opdef.scalar is not None and len(node.outputs) == 1


def _check_constants(body: Graph) -> None:
    for c in body.constants:
        if c.data.size != 1:
            raise ShapeError(
                f"fused: body constant %{c.name} has {c.data.size} elements; only single "
                "elements live in a body (larger constants must be inputs of the fused node)"
            )


def _check_elementwise(body: Graph) -> None:
    if not body.nodes or not body.outputs:
        raise ShapeError("fused elementwise: the body has no nodes or no outputs")
    size = body.types[body.outputs[0]].size
    for n in body.nodes:
        if not (is_pointwise(n) or get_op(n.op).has(VIEW)):
            raise ShapeError(
                f"fused elementwise: {n.describe()} is not an elementwise op with a scalar "
                "expression (or a view)"
            )
        for o in n.outputs:
            if o.type.size != size:
                raise ShapeError(
                    f"fused elementwise: %{o.name}: {format_type(o.type)} has {o.type.size} "
                    f"elements, the group computes {size} (one value per output element)"
                )
    produced = {o.name for n in body.nodes for o in n.outputs}
    for name in body.outputs:
        if name not in produced:
            raise ShapeError(f"fused elementwise: output %{name} is not computed by the body")


def _check_epilogue(body: Graph) -> None:
    if not body.nodes or len(body.outputs) != 1:
        raise ShapeError("fused epilogue: the body needs an anchor node and exactly one output")
    anchor, rest = body.nodes[0], body.nodes[1:]
    if not get_op(anchor.op).has(OUT_FUSABLE) or len(anchor.outputs) != 1:
        raise ShapeError(f"fused epilogue: the first node, {anchor.describe()}, is not out-fusable")
    inputs = {v.name for v in body.inputs}
    for i in anchor.inputs:
        if i and i not in inputs:
            raise ShapeError(
                f"fused epilogue: the anchor reads %{i}, which is not a body input (the anchor "
                "reads its operands from buffers: they are inputs of the fused node)"
            )
    t = anchor.output.type
    for n in rest:
        if not is_pointwise(n):
            raise ShapeError(f"fused epilogue: {n.describe()} is not an elementwise op")
        o = n.output.type
        if o.shape != t.shape or o.dtype != t.dtype:
            raise ShapeError(
                f"fused epilogue: {n.describe()} gives {format_type(o)}; epilogue ops keep the "
                f"anchor's {format_type(t)} (they finish its output in place)"
            )
    last = body.nodes[-1].output.name
    if body.outputs[0] != last:
        raise ShapeError(f"fused epilogue: the output must be %{last}, the last node's value")


FUSED_KINDS: dict[str, FusedKind] = {
    k.name: k
    for k in (
        FusedKind(
            "elementwise",
            frozenset({ELEMENTWISE, BROADCAST}),
            _check_elementwise,
            lower_elementwise,
        ),
        FusedKind("epilogue", frozenset({OUT_FUSABLE}), _check_epilogue, lower_epilogue),
    )
}


def kind_traits(kind: str) -> frozenset[str]:
    """What a fused group of `kind` computes, in trait terms (the op itself is OPAQUE)."""
    return FUSED_KINDS[kind].traits


def _kind(a: Attrs) -> FusedKind:
    kind = FUSED_KINDS.get(a["kind"])
    if kind is None:
        raise ShapeError(f"fused: unknown kind {a['kind']!r} (one of {', '.join(FUSED_KINDS)})")
    return kind


def _infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    body: Graph = a["body"]
    if len(types) != len(body.inputs):
        raise ShapeError(f"fused: {len(types)} inputs, but the body takes {len(body.inputs)}")
    for k, (t, v) in enumerate(zip(types, body.inputs)):
        if t is None or t.shape != v.type.shape or t.dtype != v.type.dtype:
            got = "nothing" if t is None else format_type(t)
            raise ShapeError(
                f"fused: input {k} is {got}, the body's %{v.name} is {format_type(v.type)}"
            )
    _check_constants(body)
    _kind(a).check(body)
    return [body.types[o] for o in body.outputs]


def _reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    from modelc.ir.interpreter import run_graph  # the interpreter imports the op registry

    body: Graph = a["body"]
    feeds = {v.name: x for v, x in zip(body.inputs, xs)}
    out = run_graph(body, feeds)
    return [out[name] for name in body.outputs]


def _lower(req: LowerRequest) -> Kernel:
    return _kind(req.node.attrs).lower(req)


def body_name(ops: Sequence[str], limit: int = 5) -> str:
    """`conv_add_relu`: the name of a body graph (and of its kernel), from its ops in order."""
    parts = list(ops[:limit]) + ([f"{len(ops) - limit}more"] if len(ops) > limit else [])
    return "_".join(re.sub(r"\W", "_", p) for p in parts) or "fused"


register_op(
    OpDef(
        name="fused",
        infer=_infer,
        reference=_reference,
        attrs={
            "kind": AttrSpec("str", doc="how the group lowers: " + ", ".join(FUSED_KINDS)),
            "body": AttrSpec("graph", doc="the fused group; inputs/outputs are the node's"),
        },
        num_inputs=(0, -1),
        num_outputs=-1,
        traits=frozenset({OPAQUE}),
        lower=_lower,
        doc="A group of nodes that runs as one kernel; `body` is the group as a nested graph.",
    )
)
