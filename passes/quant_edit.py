"""A small, explicit graph editor for the quantization passes' float rewrites.

SmoothQuant and bias correction change a few constants and insert a node or two (a `mul` by
1 / s, an `add` of a new bias) before quantization proper. The rule-driven `passes/rewrite.py`
would do, but these edits are targeted (this node's input, that constant), so a tiny editor
that keeps names and order explicit reads better: new nodes go right before or after the node
they belong to, replaced constants get fresh names (the old one may be shared), and constants
nobody reads any more are dropped when the new graph is built. The QDQ rewrite of
passes/quantize.py makes its nodes and constants through it too.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType
from modelc.ir.graph import Constant, Graph, Node, Value, fresh_name, make_constant
from modelc.ir.opdef import get_op
from modelc.ir.types import TensorType


class GraphEdit:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[Node] = list(graph.nodes)
        self.constants: dict[str, Constant] = dict(graph.constant_map)
        self.types: dict[str, TensorType] = dict(graph.types)
        self.taken: set[str] = set(graph.types)

    def fresh(self, hint: str) -> str:
        return fresh_name(hint, self.taken)

    def const(self, hint: str, data: np.ndarray, dtype: DType | None = None) -> str:
        """A new constant (a fresh name derived from `hint`): float32, or `data` as is typed
        `dtype` (integer weights: i4 values are stored in int8 arrays)."""
        name = self.fresh(hint)
        if dtype is None:
            c = make_constant(name, np.ascontiguousarray(data, np.float32))
        else:
            c = make_constant(name, data, TensorType(data.shape, dtype))
        self.constants[name] = c
        self.types[name] = c.value.type
        return name

    def data(self, name: str) -> np.ndarray:
        return self.constants[name].data

    def node(self, op: str, inputs: list[str], attrs: dict[str, Any], out: str, loc: str) -> Node:
        """A new node (not placed yet) with its output type inferred."""
        opdef = get_op(op)
        a = opdef.check_attrs(Attrs(attrs), loc=loc)
        (t,) = opdef.infer_types([self.types[i] if i else None for i in inputs], a, loc=loc)
        self.types[out] = t
        return Node(op, tuple(inputs), (Value(out, t),), a, loc)

    def index(self, node: Node) -> int:
        return next(i for i, n in enumerate(self.nodes) if n is node)

    def replace(self, old: Node, new: Node) -> Node:
        self.nodes[self.index(old)] = new
        return new

    def set_inputs(self, node: Node, inputs: list[str]) -> Node:
        return self.replace(node, dataclasses.replace(node, inputs=tuple(inputs)))

    def insert_before(self, anchor: Node, node: Node) -> None:
        self.nodes.insert(self.index(anchor), node)

    def insert_after(self, anchor: Node, node: Node) -> None:
        self.nodes.insert(self.index(anchor) + 1, node)

    def build(self) -> Graph:
        used = {i for n in self.nodes for i in n.inputs} | set(self.graph.outputs)
        consts = tuple(c for name, c in self.constants.items() if name in used)
        return self.graph.replace(nodes=tuple(self.nodes), constants=consts)
