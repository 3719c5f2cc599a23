"""Graph IR -> ONNX: the driver and the per-op exporter registry.

    model = to_onnx(graph)            # onnx.ModelProto, opset 20 (21 with 4-bit / 16-bit quant)
    export_onnx(graph, "model.onnx")  # written and checked with onnx.checker

One exporter function per IR op, registered by op name (`@exporter("conv")`), in the files
`onnx_ops_*.py` split by concept, mirroring the frontend's one-converter-per-op registry in the
other direction. An exporter gets a `NodeExport` (the node, the ONNX names of its inputs and
outputs, and helpers that add ONNX nodes and initializers) and writes ONNX nodes whose final
outputs carry the IR node's output names. Most IR ops are one ONNX node; a few are short
compositions (silu, attention, float mod, NHWC layouts) because ONNX has no single op with
their exact semantics.

Names are preserved: graph inputs, outputs, constants (as initializers) and node outputs keep
their IR names, so an exported QDQ model reads like the IR it came from, and node names are the
IR node's `loc` (the ONNX node it was imported from). Every value gets a `value_info` with its
static shape, so viewers and onnxruntime see the same shapes the compiler did.

The opset is the lowest that covers the graph: 20 (Gelu's) unless an exporter asks for more
(`NodeExport.require_opset`): QuantizeLinear / DequantizeLinear of INT4 / UINT4 (int4 weights)
and 16-bit types need 21. Not 21 always: onnxruntime 1.32's QDQ propagation plus its int8 -> uint8
conversion writes a QuantizeLinear whose output_dtype contradicts its zero point under opset 21
and then refuses to load the model (seen on a transformer with int8 activations). An op without
an exporter is an `ExportError` naming the node, the op and what to do; ops that only exist after
`fold-qdq` (qconv, qmatmul, requantize) say to export the QDQ graph instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
from onnx import helper

from modelc.errors import UnsupportedOpError
from modelc.export.onnx_dtypes import make_tensor, onnx_type, value_info
from modelc.ir import dtypes as D
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType
from modelc.ir.graph import Graph, Node, fresh_name
from modelc.ir.types import TensorType

BASE_OPSET = 20
IR_VERSION = 10  # the ONNX IR version that goes with opset 21 (onnx 1.16); 20 reads it too
PRODUCER = "modelc"


class ExportError(UnsupportedOpError):
    """A graph cannot be written as ONNX: an op without an exporter, or attributes ONNX cannot
    express. A subclass of UnsupportedOpError, so `modelc.Error` handlers catch it."""


# ---- the registry ------------------------------------------------------------------------------

ExporterFn = Callable[["NodeExport"], None]
F = TypeVar("F", bound=ExporterFn)

_EXPORTERS: dict[str, ExporterFn] = {}
# op -> why it has no exporter and what to do instead (ops that cannot have one).
_NOT_EXPORTABLE: dict[str, str] = {}


def register_exporter(op: str, fn: ExporterFn) -> None:
    """Register `fn` as the ONNX exporter of IR op `op` (table-driven families use this)."""
    if op in _EXPORTERS:
        raise ValueError(f"ONNX exporter for {op!r} registered twice")
    _EXPORTERS[op] = fn


def exporter(*ops: str) -> Callable[[F], F]:
    """Decorator form: `@exporter("conv")`, or several ops sharing one function."""

    def register(fn: F) -> F:
        for op in ops:
            register_exporter(op, fn)
        return fn

    return register


def not_exportable(op: str, why: str) -> None:
    """Record that `op` has no ONNX form, and the advice its error message gives."""
    _NOT_EXPORTABLE[op] = why


def exportable_ops() -> tuple[str, ...]:
    """The IR ops with an ONNX exporter, sorted."""
    _load_exporters()
    return tuple(sorted(_EXPORTERS))


def _load_exporters() -> None:
    # Importing the family modules registers their exporters (once; imports are cached).
    import modelc.export.onnx_ops_elementwise  # noqa: F401
    import modelc.export.onnx_ops_nn  # noqa: F401
    import modelc.export.onnx_ops_quant  # noqa: F401
    import modelc.export.onnx_ops_tensor  # noqa: F401


# ---- what one exporter sees --------------------------------------------------------------------


def onnx_attr(value: Any) -> Any:
    """An IR attribute value as `helper.make_attribute` takes it (bools are ints in ONNX)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, DType):
        return onnx_type(value)
    if isinstance(value, tuple):
        return [onnx_attr(v) for v in value]
    return value


@dataclass
class NodeExport:
    """One IR node being exported: its ONNX input / output names and types, and the builder."""

    node: Node
    builder: OnnxBuilder
    inputs: tuple[str, ...]  # ONNX names of the node's inputs; "" for an absent optional one
    outputs: tuple[str, ...]  # ONNX names the exporter must produce, in output order
    in_types: tuple[TensorType | None, ...]

    @property
    def attrs(self) -> Attrs:
        return self.node.attrs

    def in_type(self, k: int = 0) -> TensorType:
        t = self.in_types[k]
        if t is None:
            raise self.error(f"input {k} is absent")
        return t

    def emit(
        self,
        op_type: str,
        inputs: Sequence[str],
        outputs: Sequence[str] | int = 1,
        **attrs: Any,
    ) -> list[str]:
        """Add the ONNX node `op_type(inputs) {attrs}`; `outputs` are names, or how many fresh
        intermediate names to make. Returns the output names. `None` attributes are left out."""
        if isinstance(outputs, int):
            base = self.outputs[0] if self.outputs else self.node.op
            outputs = [self.builder.fresh(f"{base}/{op_type}") for _ in range(outputs)]
        self.builder.add_node(op_type, inputs, outputs, self._node_name(op_type), attrs)
        return list(outputs)

    def emit_out(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> None:
        """Add the ONNX node that produces the IR node's outputs."""
        self.emit(op_type, inputs, list(self.outputs), **attrs)

    def const(self, data: Any, dtype: DType | None = None, hint: str = "") -> str:
        """A new initializer holding `data` (as `dtype`, default the array's own)."""
        arr = np.asarray(data)
        name = self.builder.fresh(hint or f"{self.outputs[0] if self.outputs else 'c'}/const")
        self.builder.add_initializer(make_tensor(name, arr, dtype))
        return name

    def ints(self, values: Iterable[int], hint: str = "") -> str:
        """A 1-D int64 initializer (shapes, axes, pads, ...)."""
        return self.const(np.asarray(list(values), np.int64).reshape(-1), D.i64, hint)

    def scalar(self, value: float | int, dtype: DType, hint: str = "") -> str:
        """A 0-d initializer of element type `dtype`."""
        return self.const(np.asarray(value, dtype.numpy), dtype, hint)

    def require_opset(self, version: int) -> None:
        """The exported model needs at least this opset (for this node's types or form)."""
        self.builder.opset = max(self.builder.opset, version)

    def error(self, what: str) -> ExportError:
        """An ExportError naming this node and op."""
        return ExportError(f"export to ONNX: {self.node.describe()}: {what}")

    def _node_name(self, op_type: str) -> str:
        loc = self.node.loc
        if loc and self.builder.shared_locs.get(loc, 0) > 1:
            loc = f"{loc}/{op_type}"
        base = loc or (self.outputs[0] if self.outputs else self.node.op)
        return self.builder.node_name(base, op_type)


# ---- the builder -------------------------------------------------------------------------------


@dataclass
class OnnxBuilder:
    """Accumulates the ONNX nodes, initializers and value types of one exported graph."""

    taken: set[str] = field(default_factory=set)
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    types: dict[str, TensorType] = field(default_factory=dict)
    opset: int = BASE_OPSET
    # loc -> how many IR nodes carry it (a quantized layer's Q / DQ nodes share the layer's)
    shared_locs: dict[str, int] = field(default_factory=dict)
    _node_names: set[str] = field(default_factory=set)

    def fresh(self, hint: str) -> str:
        """A value name not used yet: `hint` itself when free."""
        return fresh_name(hint, self.taken)

    def node_name(self, base: str, op_type: str) -> str:
        """Unique node names: `base` (the IR node's loc, or `loc/OpType` when several IR nodes
        share the loc, as a quantized layer's Q / DQ nodes share the layer's) for the first
        ONNX node, then `base/OpType`, `base/OpType_1`, ... for the rest."""
        name, k = base, 0
        if name in self._node_names:
            name = hint = f"{base}/{op_type}"
            while name in self._node_names:
                k += 1
                name = f"{hint}_{k}"
        self._node_names.add(name)
        return name

    def add_node(
        self,
        op_type: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        name: str,
        attrs: Mapping[str, Any],
    ) -> None:
        kept = {k: onnx_attr(v) for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name, **kept))

    def add_initializer(self, tensor: onnx.TensorProto) -> None:
        self.initializers.append(tensor)

    # ---- graphs ----------------------------------------------------------------------------

    def add_graph(self, graph: Graph, names: Mapping[str, str]) -> None:
        """Export `graph`'s constants and nodes. `names` maps IR value names to ONNX names
        (for a fused body: its inputs and outputs to the fused node's); other values keep their
        names where free."""
        _load_exporters()
        rename = dict(names)

        def onnx_name(v: str) -> str:
            if v not in rename:
                rename[v] = self.fresh(v)
            return rename[v]

        for node in graph.nodes:
            if node.loc:
                self.shared_locs[node.loc] = self.shared_locs.get(node.loc, 0) + 1
        for c in graph.constants:
            self.add_initializer(make_tensor(onnx_name(c.name), c.data, c.value.type.dtype))
        types = graph.types
        for node in graph.nodes:
            ins = tuple(onnx_name(i) if i else "" for i in node.inputs)
            outs = tuple(onnx_name(o.name) for o in node.outputs)
            in_types = tuple(types[i] if i else None for i in node.inputs)
            for name, o in zip(outs, node.outputs):
                self.types[name] = o.type
            self.export_node(NodeExport(node, self, ins, outs, in_types))

    def export_node(self, e: NodeExport) -> None:
        fn = _EXPORTERS.get(e.node.op)
        if fn is None:
            why = _NOT_EXPORTABLE.get(
                e.node.op,
                "it has no ONNX exporter yet; add one in modelc/export/onnx_ops_*.py, or "
                "export the graph from before the pass that introduced the op",
            )
            raise e.error(f"op {e.node.op!r} cannot be exported: {why}")
        fn(e)


@exporter("fused")
def fused(e: NodeExport) -> None:
    """A fused group is its body's nodes, inlined: the body's inputs and outputs are the fused
    node's, its inner values keep their names where free."""
    body: Graph = e.attrs["body"]
    names = dict(zip((v.name for v in body.inputs), e.inputs))
    passed = [(names[o], out) for o, out in zip(body.outputs, e.outputs) if o in names]
    names.update((o, out) for o, out in zip(body.outputs, e.outputs) if o not in names)
    e.builder.add_graph(body, names)
    for src, out in passed:  # a body output that is one of its inputs
        e.emit("Identity", [src], [out])


# ---- whole models ------------------------------------------------------------------------------


def to_onnx(
    graph: Graph, *, doc: str = "", metadata: Mapping[str, str] | None = None
) -> onnx.ModelProto:
    """`graph` as an ONNX model (opset 20, or 21 where 4-bit / 16-bit quantization needs it),
    names preserved; not yet checked. `metadata` goes into the model's metadata_props."""
    b = OnnxBuilder(taken=set(graph.types))
    b.add_graph(graph, {v: v for v in graph.types})
    inputs = [value_info(v.name, v.type, f"graph input {v.name!r}") for v in graph.inputs]
    outputs = [
        value_info(o, graph.types[o], f"graph output {o!r}") for o in dict.fromkeys(graph.outputs)
    ]
    boundary = {v.name for v in graph.inputs} | set(graph.outputs)
    inner = [value_info(n, t) for n, t in b.types.items() if n not in boundary]
    g = helper.make_graph(
        b.nodes, graph.name or "main", inputs, outputs, b.initializers, value_info=inner
    )
    model = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", b.opset)],
        producer_name=PRODUCER,
        producer_version=_version(),
        ir_version=IR_VERSION,
        doc_string=doc,
    )
    if metadata:
        helper.set_model_props(model, dict(metadata))
    return model


def export_onnx(
    graph: Graph,
    path: str | os.PathLike[str],
    *,
    doc: str = "",
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write `graph` as an ONNX file at `path` (checked with onnx.checker); returns the path."""
    model = to_onnx(graph, doc=doc, metadata=metadata)
    check(model, graph.name)
    path = Path(path)
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def check(model: onnx.ModelProto, what: str) -> None:
    """onnx.checker; a failure is an exporter bug, reported as one. Without the checker's
    shape inference: onnx infers one window more than onnxruntime (and the IR) computes for a
    ceil_mode pool whose last window starts in the end padding, and would reject the file."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(
            f"export to ONNX: the model exported from graph {what!r} fails onnx.checker ({e}); "
            "this is a modelc exporter bug, please report it with the model"
        ) from e


def _version() -> str:
    from modelc import __version__

    return __version__
