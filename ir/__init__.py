"""The two-level IR: graph (level 1) and loop (level 2)."""

from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType, parse_dtype
from modelc.ir.graph import Constant, Graph, GraphBuilder, Node, Value
from modelc.ir.opdef import OpDef, all_ops, get_op, register_op
from modelc.ir.types import QuantParams, TensorType

__all__ = [
    "Attrs",
    "Constant",
    "DType",
    "Graph",
    "GraphBuilder",
    "Node",
    "OpDef",
    "QuantParams",
    "TensorType",
    "Value",
    "all_ops",
    "get_op",
    "parse_dtype",
    "register_op",
]
