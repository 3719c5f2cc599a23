"""The graph verifier: checks the level-1 invariants every pass must keep.

Run after every pass when the pass context asks for it, and on hand-written IR: the parser
re-infers nothing, so this is where a wrong type in a golden file or a pass that forgot to update
an output type is caught. Errors name the node (`Node.describe()`), its position and outputs, and
what is wrong.

Checked: value names are unique and non-empty across inputs, constants and node outputs; nodes
are in topological order (inputs defined earlier, or "" for an absent optional input); ops are
registered; attributes are exactly what `OpDef.check_attrs` fills in (nothing unknown, nothing
missing, defaults written out); output types have the shape and dtype `OpDef.infer_types` gives
(quant and encoding are left to the passes that set them); constants' arrays agree with their
types; graph outputs are defined. A graph-valued attribute (the body of a `fused` node) is a
scope of its own and is verified recursively, with errors naming the node that holds it.
"""

from __future__ import annotations

import numpy as np

from modelc.errors import Error, VerifyError
from modelc.ir.attrs import AttrValue
from modelc.ir.dtypes import DType
from modelc.ir.graph import Graph, Node
from modelc.ir.opdef import get_op
from modelc.ir.printer import format_name, format_type
from modelc.ir.types import TensorType


def _where(index: int, node: Node) -> str:
    outs = ", ".join("%" + format_name(o.name) for o in node.outputs) or "no outputs"
    return f"{node.describe()} (node #{index}, defining {outs})"


def verify(graph: Graph) -> None:
    """Raise `VerifyError` at the first broken invariant of `graph`; return None when sound."""
    types: dict[str, TensorType] = {}

    def define(name: str, t: TensorType, what: str) -> None:
        if not name:
            raise VerifyError(f"graph {graph.name!r}: {what} has an empty name")
        if name in types:
            raise VerifyError(f"graph {graph.name!r}: value %{format_name(name)} defined twice")
        types[name] = t

    for v in graph.inputs:
        define(v.name, v.type, "an input")
    for c in graph.constants:
        define(c.name, c.value.type, "a constant")
        _check_constant_data(c.name, c.value.type, c.data)
    for index, node in enumerate(graph.nodes):
        _check_node(index, node, types)
        for o in node.outputs:
            define(o.name, o.type, f"an output of {_where(index, node)}")
    for name in graph.outputs:
        if name not in types:
            raise VerifyError(
                f"graph {graph.name!r}: output %{format_name(name)} is not defined by any input, "
                "constant or node"
            )


def _check_constant_data(name: str, t: TensorType, data: object) -> None:
    what = f"constant %{format_name(name)}: {format_type(t)}"
    if not isinstance(data, np.ndarray):
        raise VerifyError(f"{what} holds a {type(data).__name__}, not a numpy array")
    try:
        storage = t.dtype.numpy
    except Error as e:
        raise VerifyError(f"{what}: {e}") from None
    if data.shape != t.shape or data.dtype != storage:
        raise VerifyError(
            f"{what} holds an array of shape {list(data.shape)} and dtype {data.dtype}; "
            f"the type asks for shape {list(t.shape)} and dtype {storage}"
        )


def _check_node(index: int, node: Node, types: dict[str, TensorType]) -> None:
    where = _where(index, node)
    for k, name in enumerate(node.inputs):
        if name and name not in types:
            raise VerifyError(
                f"{where}: input {k} %{format_name(name)} is not defined before the node "
                "(undefined value, or nodes out of topological order)"
            )
    for k, v in node.attrs.items():  # nested bodies first: inference reads them
        if isinstance(v, Graph):
            try:
                verify(v)
            except VerifyError as e:
                raise VerifyError(f"{where}: in its {k} graph: {e}") from e
    try:
        opdef = get_op(node.op)
        filled = opdef.check_attrs(node.attrs, loc=node.loc)
        in_types = [types[name] if name else None for name in node.inputs]
        inferred = opdef.infer_types(in_types, filled, loc=node.loc)
    except Error as e:
        raise VerifyError(f"{where}: {e}") from e
    if filled != node.attrs:
        missing = {k: v for k, v in filled.items() if k not in node.attrs}
        raise VerifyError(
            f"{where}: attributes are not normalized; write out the defaults {missing} "
            "(build nodes through OpDef.check_attrs or GraphBuilder)"
        )
    for k, v in node.attrs.items():
        kind = opdef.attrs[k].kind
        if not _fits(v, kind) and not (v is None and opdef.attrs[k].default is None):
            raise VerifyError(f"{where}: attribute {k}={v!r} is not of kind {kind!r}")
    if len(inferred) != len(node.outputs):
        raise VerifyError(
            f"{where}: has {len(node.outputs)} outputs, op {node.op} makes {len(inferred)}"
        )
    for o, t in zip(node.outputs, inferred):
        if o.type.shape != t.shape or o.type.dtype != t.dtype:
            raise VerifyError(
                f"{where}: output %{format_name(o.name)} is typed {format_type(o.type)} but "
                f"{node.op} of these inputs gives {t.dtype.name}[{','.join(map(str, t.shape))}]"
            )


def _fits(v: AttrValue, kind: str) -> bool:
    """Whether `v` is a value of the AttrSpec kind (an int is a valid float; a bool is neither)."""
    if kind in ("ints", "floats", "strs"):
        return isinstance(v, tuple) and all(_fits(x, kind[:-1]) for x in v)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "dtype":
        return isinstance(v, DType)
    if kind == "graph":
        return isinstance(v, Graph)
    return True  # "any", or a kind this verifier does not know
