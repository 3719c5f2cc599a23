"""Level 1: the graph IR.

A `Graph` is an SSA list of `Node`s in topological order over named `Value`s. Everything is
immutable: a pass builds a new graph (cheap, since untouched nodes are shared). Values are
referred to by name; names are unique within a graph. An absent optional input is "".

Constants are numpy arrays (made read-only) with their own names, so passes can fold and
re-layout weights without touching nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import from_numpy
from modelc.ir.types import TensorType


@dataclass(frozen=True)
class Value:
    name: str
    type: TensorType


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[Value, ...]
    attrs: Attrs = field(default_factory=Attrs)
    # Where the node came from (the ONNX node name, or a pass that made it); for messages only.
    loc: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not isinstance(self.attrs, Attrs):
            object.__setattr__(self, "attrs", Attrs(self.attrs))

    @property
    def output(self) -> Value:
        """The single output of a one-output node."""
        assert len(self.outputs) == 1, f"{self.op} has {len(self.outputs)} outputs"
        return self.outputs[0]

    def describe(self) -> str:
        """`op 'loc'` for error messages."""
        return f"{self.op} node {self.loc!r}" if self.loc else f"{self.op} node"


@dataclass(frozen=True, eq=False)
class Constant:
    value: Value
    data: np.ndarray

    @property
    def name(self) -> str:
        return self.value.name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Constant):
            return NotImplemented
        return (
            self.value == other.value
            and self.data.dtype == other.data.dtype
            and self.data.shape == other.data.shape
            and np.array_equal(self.data, other.data, equal_nan=self.data.dtype.kind == "f")
        )

    def __hash__(self) -> int:
        return hash(self.value)


def make_constant(name: str, data: Any, type_: TensorType | None = None) -> Constant:
    arr = np.array(data, copy=True) if not isinstance(data, np.ndarray) else data
    if arr.flags.writeable:
        arr = arr.copy()
        arr.flags.writeable = False
    t = type_ or TensorType(arr.shape, from_numpy(arr.dtype))
    return Constant(Value(name, t), arr)


@dataclass(frozen=True, eq=False)
class Graph:
    name: str
    inputs: tuple[Value, ...]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    constants: tuple[Constant, ...] = ()

    def __post_init__(self) -> None:
        for f in ("inputs", "outputs", "nodes", "constants"):
            object.__setattr__(self, f, tuple(getattr(self, f)))

    # ---- derived views (cached: the graph never changes) -------------------------------------

    @cached_property
    def types(self) -> Mapping[str, TensorType]:
        """Type of every value: inputs, constants and node outputs."""
        t: dict[str, TensorType] = {v.name: v.type for v in self.inputs}
        t.update((c.name, c.value.type) for c in self.constants)
        for n in self.nodes:
            t.update((o.name, o.type) for o in n.outputs)
        return t

    @cached_property
    def constant_map(self) -> Mapping[str, Constant]:
        return {c.name: c for c in self.constants}

    @cached_property
    def producers(self) -> Mapping[str, Node]:
        return {o.name: n for n in self.nodes for o in n.outputs}

    @cached_property
    def users(self) -> Mapping[str, tuple[Node, ...]]:
        u: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    u.setdefault(i, []).append(n)
        return {k: tuple(v) for k, v in u.items()}

    @property
    def output_values(self) -> tuple[Value, ...]:
        return tuple(Value(o, self.types[o]) for o in self.outputs)

    def constant(self, name: str) -> np.ndarray | None:
        c = self.constant_map.get(name)
        return None if c is None else c.data

    def replace(self, **changes: Any) -> Graph:
        fields = {
            "name": self.name,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "nodes": self.nodes,
            "constants": self.constants,
        }
        fields.update(changes)
        return Graph(**fields)

    # ---- equality: structural, constants by value ----------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (
            self.name == other.name
            and self.inputs == other.inputs
            and self.outputs == other.outputs
            and self.nodes == other.nodes
            and self.constants == other.constants
        )

    def __hash__(self) -> int:
        return hash((self.name, self.inputs, self.outputs, self.nodes))

    def __str__(self) -> str:
        from modelc.ir.printer import print_graph

        return print_graph(self, constants="elide")


def fresh_name(hint: str, taken: set[str]) -> str:
    """`hint` if it is not in `taken`, else the first free `hint_1`, `hint_2`, ...; the name
    is added to `taken`. For passes and exporters that add values next to existing names."""
    name, k = hint, 0
    while name in taken:
        k += 1
        name = f"{hint}_{k}"
    taken.add(name)
    return name


class GraphBuilder:
    """Builds a graph node by node, inferring output types through the op registry.

    With `fold=True`, a node whose inputs are all constants is evaluated right away with the op's
    reference implementation and becomes a constant: shape subgraphs (Shape -> Gather -> Concat
    -> Reshape) vanish at import, once input shapes are known.
    """

    def __init__(self, name: str = "main", *, fold: bool = True) -> None:
        self.name = name
        self.fold = fold
        self.inputs: list[Value] = []
        self.outputs: list[str] = []
        self.nodes: list[Node] = []
        self.constants: dict[str, Constant] = {}
        self.types: dict[str, TensorType] = {}
        self._taken: set[str] = set()
        self._counter = 0

    # ---- names ---------------------------------------------------------------------------------

    def fresh(self, hint: str = "v") -> str:
        """A value name not used yet, derived from `hint`."""
        base = _sanitize(hint) or "v"
        if base not in self._taken:
            self._taken.add(base)
            return base
        while True:
            self._counter += 1
            cand = f"{base}_{self._counter}"
            if cand not in self._taken:
                self._taken.add(cand)
                return cand

    def reserve(self, name: str) -> None:
        self._taken.add(name)

    # ---- building ------------------------------------------------------------------------------

    def add_input(self, name: str, type_: TensorType) -> str:
        n = self.fresh(name)
        self.inputs.append(Value(n, type_))
        self.types[n] = type_
        return n

    def add_constant(self, data: Any, hint: str = "c", type_: TensorType | None = None) -> str:
        n = self.fresh(hint)
        c = make_constant(n, data, type_)
        self.constants[n] = c
        self.types[n] = c.value.type
        return n

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def constant(self, name: str) -> np.ndarray | None:
        c = self.constants.get(name)
        return None if c is None else c.data

    def add_node(
        self,
        op: str,
        inputs: Sequence[str],
        attrs: Mapping[str, Any] | None = None,
        *,
        loc: str = "",
        hints: Sequence[str] | None = None,
        fold: bool | None = None,
    ) -> tuple[str, ...]:
        """Append `op(inputs) {attrs}`; returns the output names (constants when folded)."""
        from modelc.ir.opdef import get_op

        opdef = get_op(op)
        a = opdef.check_attrs(Attrs(attrs or {}), loc=loc)
        in_types = tuple(self.types[i] if i else None for i in inputs)
        out_types = opdef.infer_types(in_types, a, loc=loc)
        hints = list(hints or [])
        hints += [f"{op}"] * (len(out_types) - len(hints))
        do_fold = self.fold if fold is None else fold
        if do_fold and opdef.foldable and all((not i) or i in self.constants for i in inputs):
            arrays = tuple(self.constants[i].data if i else None for i in inputs)
            results = opdef.evaluate(arrays, a, out_types)
            return tuple(self.add_constant(r, h, t) for r, h, t in zip(results, hints, out_types))
        outs = []
        for h, t in zip(hints, out_types):
            n = self.fresh(h)
            self.types[n] = t
            outs.append(Value(n, t))
        self.nodes.append(Node(op, tuple(inputs), tuple(outs), a, loc))
        return tuple(o.name for o in outs)

    def add(self, op: str, *inputs: str, loc: str = "", **attrs: Any) -> str:
        """One-output shorthand of `add_node`."""
        (out,) = self.add_node(op, inputs, attrs, loc=loc)
        return out

    def set_outputs(self, names: Iterable[str]) -> None:
        self.outputs = list(names)

    def build(self) -> Graph:
        """The graph, keeping only constants that something uses."""
        used = {i for n in self.nodes for i in n.inputs} | set(self.outputs)
        consts = tuple(c for name, c in self.constants.items() if name in used)
        return Graph(self.name, tuple(self.inputs), tuple(self.outputs), tuple(self.nodes), consts)


def _sanitize(name: str) -> str:
    """Names are kept as the model spells them (users feed inputs by those names; the printer
    quotes names that are not identifiers). Only an empty name is replaced."""
    return name
