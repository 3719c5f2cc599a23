"""What a converter sees of one ONNX node.

`OnnxNode` wraps the NodeProto, the modelc values its inputs resolved to, and the graph builder.
Converters stay small because the chores live here: parsed attributes, constant inputs (with the
error a user can act on when one is not constant), scalar constants in an operand's dtype, and
`op()`, which emits a graph-IR node with the ONNX node's name as `loc`. The builder folds nodes
whose inputs are all constant, so converters never special-case constant operands.

Intermediate values get names derived from the node's first output; the driver renames each value
a converter returns to the ONNX output's name, so converters need not know which op comes last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto

from modelc.errors import ShapeError, UnsupportedOpError
from modelc.frontend.onnx_ops.dtypes import sparse_to_array, tensor_to_array
from modelc.ir.dtypes import DType
from modelc.ir.graph import GraphBuilder
from modelc.ir.types import TensorType


class OnnxNode:
    def __init__(
        self,
        proto: onnx.NodeProto,
        *,
        opset: int,
        builder: GraphBuilder,
        inputs: Sequence[str],
        loc: str,
        wanted: Sequence[bool],
    ) -> None:
        self.proto = proto
        self.opset = opset
        self.b = builder
        self.inputs: tuple[str, ...] = tuple(inputs)
        self.loc = loc
        self._wanted = tuple(wanted)
        self._attrs = {a.name: a for a in proto.attribute}
        first = next((o for o in proto.output if o), "") or loc
        self._hint = first

    # ---- identity and errors -----------------------------------------------------------------

    @property
    def op_type(self) -> str:
        return self.proto.op_type

    def describe(self) -> str:
        """`node 'conv7' (op Conv, opset 17)`: the prefix of every message about this node."""
        return f"node {self.loc!r} (op {self.op_type}, opset {self.opset})"

    def unsupported(self, msg: str) -> UnsupportedOpError:
        """An error to raise: this use of the op is outside what modelc compiles."""
        return UnsupportedOpError(f"{self.describe()}: {msg}")

    def shape_error(self, msg: str) -> ShapeError:
        return ShapeError(f"{self.describe()}: {msg}")

    # ---- attributes --------------------------------------------------------------------------

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute as a Python value (str for strings, list for repeated fields, an
        `(array, TensorType)` pair for tensors), or `default` when the node does not set it."""
        a = self._attrs.get(name)
        if a is None:
            return default
        what = f"attribute {name!r}"  # the driver prefixes the node
        kind = a.type
        if kind == AttributeProto.FLOAT:
            return float(a.f)
        if kind == AttributeProto.INT:
            return int(a.i)
        if kind == AttributeProto.STRING:
            return a.s.decode("utf-8", errors="replace")
        if kind == AttributeProto.FLOATS:
            return [float(v) for v in a.floats]
        if kind == AttributeProto.INTS:
            return [int(v) for v in a.ints]
        if kind == AttributeProto.STRINGS:
            return [s.decode("utf-8", errors="replace") for s in a.strings]
        if kind == AttributeProto.TENSOR:
            return tensor_to_array(a.t, what)
        if kind == AttributeProto.SPARSE_TENSOR:
            return sparse_to_array(a.sparse_tensor, what)
        raise self.unsupported(
            f"attribute {name!r} is of kind {AttributeProto.AttributeType.Name(kind)}, "
            "which modelc does not support (subgraphs and type attributes)"
        )

    def ints_attr(self, name: str, default: Sequence[int] | None = None) -> list[int] | None:
        v = self.attr(name)
        return list(default) if v is None and default is not None else v

    # ---- inputs ------------------------------------------------------------------------------

    def input(self, i: int) -> str:
        """The modelc value of input `i`, or "" when the node leaves it out."""
        return self.inputs[i] if i < len(self.inputs) else ""

    def has_input(self, i: int) -> bool:
        return bool(self.input(i))

    def type(self, i: int) -> TensorType:
        return self.b.types[self.input(i)]

    def shape(self, i: int) -> tuple[int, ...]:
        return self.type(i).shape

    def rank(self, i: int) -> int:
        return self.type(i).rank

    def dtype(self, i: int) -> DType:
        return self.type(i).dtype

    def maybe_const(self, i: int) -> np.ndarray | None:
        """Input `i`'s value if it is a constant (after folding), else None (also when absent)."""
        name = self.input(i)
        return self.b.constant(name) if name else None

    def const(self, i: int, what: str) -> np.ndarray:
        """Input `i`'s value; the op needs it at compile time (`what` says what it is)."""
        name = self.input(i)
        if not name:
            raise self.unsupported(f"input {i} ({what}) is required")
        data = self.b.constant(name)
        if data is None:
            raise self.unsupported(
                f"input {i} ({what}) must be a constant, but it is computed at run time; modelc "
                "compiles static shapes only (fix the model's input shapes so that the "
                "subgraph computing it folds, or export the model with it constant)"
            )
        return data

    def ints_input(self, i: int, what: str) -> list[int] | None:
        """An optional constant int-list input (axes, pads, ...): None when absent."""
        if not self.has_input(i):
            return None
        return [int(v) for v in np.asarray(self.const(i, what)).reshape(-1)]

    # ---- outputs -----------------------------------------------------------------------------

    @property
    def num_outputs(self) -> int:
        return len(self.proto.output)

    def wants_output(self, i: int) -> bool:
        """Whether output `i` exists and something reads it (a node or the graph outputs)."""
        return i < len(self._wanted) and self._wanted[i]

    # ---- emitting ----------------------------------------------------------------------------

    def op(self, op: str, *inputs: str, **attrs: Any) -> str:
        """Emit one single-output graph-IR op; returns its value (a constant when folded)."""
        (out,) = self.b.add_node(op, inputs, attrs, loc=self.loc, hints=[f"{self._hint}_{op}"])
        return out

    def constant(self, data: Any, dtype: DType | None = None) -> str:
        """A new constant; `dtype` gives its modelc dtype (else numpy's dtype decides)."""
        arr = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype.numpy)
        t = None if dtype is None else TensorType(arr.shape, dtype)
        return self.b.add_constant(arr, f"{self._hint}_const", t)

    def scalar(self, value: float | int | bool, like: str) -> str:
        """A 0-d constant in the dtype of value `like` (binary ops want equal dtypes)."""
        return self.constant(np.asarray(value), self.b.types[like].dtype)

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        """`reshape` to a resolved shape; no node when the shape does not change."""
        shape = tuple(int(d) for d in shape)
        if self.b.types[x].shape == shape:
            return x
        return self.op("reshape", x, shape=shape)

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        """`transpose`; no node for the identity permutation."""
        perm = tuple(int(p) for p in perm)
        if perm == tuple(range(len(perm))):
            return x
        return self.op("transpose", x, perm=perm)

    def cast(self, x: str, dtype: DType) -> str:
        """`cast`; no node when `x` already has the dtype."""
        if self.b.types[x].dtype == dtype:
            return x
        return self.op("cast", x, to=dtype)
