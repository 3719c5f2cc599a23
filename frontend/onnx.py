"""The ONNX frontend: load a model and convert its graph to the graph IR.

    graph = load_onnx("model.onnx", input_shapes={"input": (1, 3, 224, 224)})

Loading turns every way a file can be wrong into a `ModelLoadError` naming the file. Conversion
walks the nodes in topological order and hands each to the converter registered for its op and
the model's opset (`frontend/onnx_ops/`). The builder folds nodes whose inputs are all constant,
so once input shapes are fixed, shape arithmetic (Shape -> Gather -> Concat -> Reshape) vanishes
at import and every op the IR sees has static attributes.

Rules that decide what is an input and what is a constant follow onnx's ReferenceEvaluator (which
produced the expected outputs of the onnx test models): an initializer is a constant even when the
graph also lists it as an input (old-style graphs do), and a value that a node produces is that
node's output even when the graph lists it as an input or an initializer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Union

import onnx
from onnx import TensorProto

from modelc.errors import (
    Error,
    ModelLoadError,
    ShapeError,
    UnsupportedOpError,
    UnsupportedTypeError,
)
from modelc.frontend.onnx_ops.dtypes import tensor_to_array, to_dtype
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import lookup
from modelc.ir.graph import Constant, Graph, GraphBuilder, Value
from modelc.ir.types import TensorType

ModelLike = Union[str, "os.PathLike[str]", bytes, bytearray, onnx.ModelProto]

MIN_OPSET = 9
MAX_OPSET = onnx.defs.onnx_opset_version()
DEFAULT_DOMAINS = ("", "ai.onnx")
SUPPORTED_OPS_DOC = "docs/onnx_frontend.md"


def load_onnx(model: ModelLike, input_shapes: Mapping[str, Sequence[int]] | None = None) -> Graph:
    """Load an ONNX model (path, serialized bytes or ModelProto) as a graph-IR `Graph`.

    `input_shapes` fixes the shape of inputs by name; it is needed when an input has symbolic or
    unknown dims (modelc compiles static shapes).
    """
    proto, source = read_model(model)
    proto = _inline_functions(proto, source)
    proto = _upgrade_old_opset(proto, source)
    opset = model_opset(proto, source)
    return _Importer(proto.graph, opset, source, input_shapes).run()


# ---- loading ---------------------------------------------------------------------------------


def read_model(model: ModelLike) -> tuple[onnx.ModelProto, str]:
    """The ModelProto with external data loaded, and a name of the source for messages."""
    if isinstance(model, onnx.ModelProto):
        _check_model(model, "<ModelProto>")
        return model, "<ModelProto>"
    if isinstance(model, (bytes, bytearray, memoryview)):
        proto = _parse(bytes(model), "<bytes>")
        return proto, "<bytes>"
    if not isinstance(model, (str, os.PathLike)):
        raise ModelLoadError(
            f"cannot load a model from a {type(model).__name__}; pass a path, the serialized "
            "bytes or an onnx.ModelProto"
        )
    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, not an ONNX model file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot be read ({e.strerror or e})") from e
    proto = _parse(data, str(path))
    _load_external_data(proto, path)
    return proto, str(path)


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError, or RuntimeError from the C++ parser
        raise ModelLoadError(
            f"{source}: not an ONNX model (the protobuf does not parse: {e}); a truncated "
            "download or a file that is not a .onnx model looks like this"
        ) from e
    _check_model(proto, source)
    return proto


def _check_model(proto: onnx.ModelProto, source: str) -> None:
    """The cheap structural checks that tell a model from random bytes that happen to parse."""
    if not proto.HasField("graph") or not proto.opset_import:
        raise ModelLoadError(
            f"{source}: not an ONNX model (it has no graph or no opset import); a truncated "
            "file or one that is not a .onnx model looks like this"
        )
    if not proto.graph.output:
        what = "the graph is empty" if not proto.graph.node else "the graph has no outputs"
        raise ModelLoadError(f"{source}: {what}; nothing to compile")


def _external_tensors(proto: onnx.ModelProto) -> list[TensorProto]:
    tensors = [t for t in proto.graph.initializer]
    for node in proto.graph.node:
        tensors += [a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR]
    return [t for t in tensors if t.data_location == TensorProto.EXTERNAL]


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Load tensors stored next to the model (onnx's external data), naming a missing file."""
    tensors = _external_tensors(proto)
    if not tensors:
        return
    base = path.parent
    for t in tensors:
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        if not location or not (base / location).is_file():
            raise ModelLoadError(
                f"{path}: tensor {t.name!r} keeps its data in the external file "
                f"{str(base / location)!r}, which does not exist; copy it next to the model"
            )
    try:
        onnx.external_data_helper.load_external_data_for_model(proto, str(base))
    except Exception as e:  # onnx raises ValidationError / OSError / ValueError here
        raise ModelLoadError(f"{path}: cannot load external tensor data ({e})") from e


def _inline_functions(proto: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """Model-local functions become plain nodes (onnx's inliner does that exactly)."""
    if not proto.functions:
        return proto
    try:
        import onnx.inliner

        return onnx.inliner.inline_local_functions(proto)
    except Exception as e:
        names = ", ".join(f"{f.domain}.{f.name}" for f in proto.functions)
        raise UnsupportedOpError(
            f"{source}: the model-local functions ({names}) could not be inlined ({e})"
        ) from e


def _upgrade_old_opset(proto: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """Models older than opset 9 are upgraded with onnx's own version converter (the ops'
    semantics are then the newer versions' ones, which the converters know); where onnx cannot
    convert them, `model_opset` reports the opset as unsupported."""
    versions = [o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions or max(versions) >= MIN_OPSET:
        return proto
    try:
        from onnx import helper, version_converter

        # onnx's converter wants every initializer listed as a graph input (IR < 4 rule);
        # those inputs come back as constants on import.
        listed = {i.name for i in proto.graph.input}
        missing = [
            helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
            for t in proto.graph.initializer
            if t.name not in listed
        ]
        if missing:
            proto = onnx.ModelProto.FromString(proto.SerializeToString())
            proto.graph.input.extend(missing)
        return version_converter.convert_version(proto, MIN_OPSET)
    except Exception:  # onnx raises many kinds here; the opset check below gives the message
        return proto


def model_opset(proto: onnx.ModelProto, source: str) -> int:
    """The default-domain opset the model imports, checked against what modelc supports."""
    versions = [o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions:
        for node in proto.graph.node:
            if node.domain not in DEFAULT_DOMAINS:
                raise UnsupportedOpError(
                    f"{source}: node {node.name or node.op_type!r} (op {node.op_type}) is in the "
                    f"domain {node.domain!r}, which modelc does not support (only the default "
                    "ONNX domain; see docs/onnx_frontend.md)"
                )
        raise ModelLoadError(f"{source}: the model imports no version of the default ONNX domain")
    opset = max(versions)
    if opset < MIN_OPSET:
        raise UnsupportedOpError(
            f"{source}: the model uses ONNX opset {opset}; modelc supports opsets "
            f"{MIN_OPSET}..{MAX_OPSET}. Upgrade it first: "
            "onnx.version_converter.convert_version(model, 13)"
        )
    if opset > MAX_OPSET:
        raise UnsupportedOpError(
            f"{source}: the model uses ONNX opset {opset}, newer than the {MAX_OPSET} of the "
            f"installed onnx {onnx.__version__}; modelc supports opsets {MIN_OPSET}..{MAX_OPSET}"
        )
    return opset


# ---- conversion ------------------------------------------------------------------------------


class _Importer:
    """Converts one ONNX graph; lives for one `load_onnx` call."""

    def __init__(
        self,
        graph: onnx.GraphProto,
        opset: int,
        source: str,
        input_shapes: Mapping[str, Sequence[int]] | None,
    ) -> None:
        self.g = graph
        self.opset = opset
        self.source = source
        self.input_shapes = dict(input_shapes or {})
        self.b = GraphBuilder(graph.name or "main", fold=True)
        # ONNX value name -> modelc value name.
        self.env: dict[str, str] = {}
        # modelc value name -> the ONNX value it was made for (aliases keep their first owner).
        self.origin: dict[str, str] = {}
        # ONNX values a converter did not produce (optional outputs) -> why, for messages.
        self.dropped: dict[str, str] = {}
        self.produced = {o for node in graph.node for o in node.output if o}
        self.read = {i for node in graph.node for i in node.input if i}
        self.read |= {o.name for o in graph.output}
        self.initializers = {t.name for t in graph.initializer}

    def run(self) -> Graph:
        self._add_initializers()
        self._add_inputs()
        for index, node in self._ordered_nodes():
            self._convert(node, index)
        self._set_outputs()
        return self.b.build()

    # ---- graph inputs and initializers -------------------------------------------------------

    def _bind(self, onnx_name: str, value: str) -> None:
        self.env[onnx_name] = value
        self.origin.setdefault(value, onnx_name)

    def _add_initializers(self) -> None:
        for t in self.g.initializer:
            if t.name in self.produced:
                continue  # a node computes it: the node's output wins
            if t.name not in self.read:
                continue  # unused (an old-style default input nobody reads): not even decoded
            data, type_ = tensor_to_array(t, f"{self.source}: initializer {t.name!r}")
            self._bind(t.name, self.b.add_constant(data, t.name, type_))

    def real_inputs(self) -> list[onnx.ValueInfoProto]:
        """Graph inputs that are neither initializers nor computed by a node."""
        skip = self.initializers | self.produced
        return [v for v in self.g.input if v.name not in skip]

    def _add_inputs(self) -> None:
        inputs = self.real_inputs()
        names = [v.name for v in inputs]
        unknown = [k for k in self.input_shapes if k not in names]
        if unknown:
            raise ShapeError(
                f"{self.source}: input_shapes names {', '.join(map(repr, unknown))}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not an input of the model; its inputs "
                f"are {', '.join(map(repr, names)) or '(none)'}"
            )
        for v in inputs:
            self._bind(v.name, self.b.add_input(v.name, self._input_type(v)))

    def _input_type(self, v: onnx.ValueInfoProto) -> TensorType:
        what = f"{self.source}: input {v.name!r}"
        if v.type.WhichOneof("value") != "tensor_type":
            kind = v.type.WhichOneof("value") or "no type"
            raise UnsupportedTypeError(
                f"{what} is a {kind}, not a tensor; modelc compiles tensor inputs only"
            )
        tt = v.type.tensor_type
        dtype = to_dtype(tt.elem_type, what)
        given = self.input_shapes.get(v.name)
        dims: list[int | str | None] | None = None
        if tt.HasField("shape"):
            dims = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tt.shape.dim
            ]
        if given is not None:
            return TensorType(self._given_shape(what, given, dims), dtype)
        if dims is None or any(not isinstance(d, int) for d in dims):
            shown = "unknown rank" if dims is None else "x".join(str(d or "?") for d in dims)
            example = "x".join(str(d) if isinstance(d, int) else "N" for d in dims or ["N"])
            raise ShapeError(
                f"{what} has symbolic or unknown dims ({shown}); modelc compiles static shapes: "
                f"pass --input-shape {v.name}={example} (CLI) or "
                f"input_shapes={{{v.name!r}: ({example.replace('x', ', ')})}} (API) with "
                "numbers for the unknown dims"
            )
        return TensorType(tuple(int(d) for d in dims), dtype)

    @staticmethod
    def _given_shape(
        what: str, given: Sequence[int], dims: list[int | str | None] | None
    ) -> tuple[int, ...]:
        try:
            shape = tuple(int(d) for d in given)
        except (TypeError, ValueError):
            raise ShapeError(f"{what}: input_shapes gives {given!r}, not a list of ints") from None
        if any(d < 0 for d in shape):
            raise ShapeError(f"{what}: input_shapes gives negative dims {shape}")
        if dims is not None:
            if len(dims) != len(shape):
                raise ShapeError(
                    f"{what} has rank {len(dims)}, but input_shapes gives {len(shape)} dims {shape}"
                )
            for i, (d, s) in enumerate(zip(dims, shape)):
                if isinstance(d, int) and d != s:
                    raise ShapeError(
                        f"{what}: dim {i} is fixed to {d} by the model, but input_shapes gives {s}"
                    )
        return shape

    # ---- nodes -------------------------------------------------------------------------------

    def _loc(self, node: onnx.NodeProto, index: int) -> str:
        return node.name or f"{node.op_type}_{index}"

    def _ordered_nodes(self) -> list[tuple[int, onnx.NodeProto]]:
        """Nodes in topological order (ONNX requires it; some exporters do not quite comply)."""
        ready = set(self.env)
        pending = list(enumerate(self.g.node))
        order: list[tuple[int, onnx.NodeProto]] = []
        while pending:
            rest = []
            for index, node in pending:
                if all((not i) or i in ready for i in node.input):
                    order.append((index, node))
                    ready.update(o for o in node.output if o)
                else:
                    rest.append((index, node))
            if len(rest) == len(pending):
                index, node = rest[0]
                missing = next(i for i in node.input if i and i not in ready)
                raise ModelLoadError(
                    f"{self.source}: node {self._loc(node, index)!r} (op {node.op_type}) reads "
                    f"{missing!r}, which no node, initializer or graph input defines (a broken "
                    "or truncated model, or a cycle)"
                )
            pending = rest
        return order

    def _convert(self, node: onnx.NodeProto, index: int) -> None:
        loc = self._loc(node, index)
        if node.domain not in DEFAULT_DOMAINS:
            raise UnsupportedOpError(
                f"node {loc!r} (op {node.op_type}, domain {node.domain}): ops of domain "
                f"{node.domain!r} are not supported by modelc, which compiles the default ONNX "
                f"domain (the supported ops are listed in {SUPPORTED_OPS_DOC})"
            )
        conv = lookup(node.op_type, self.opset)
        if conv is None:
            raise UnsupportedOpError(
                f"node {loc!r} (op {node.op_type}, opset {self.opset}): {node.op_type} is not "
                f"supported by modelc (the supported ONNX ops are listed in {SUPPORTED_OPS_DOC})"
            )
        inputs = [self._resolve(i) for i in node.input]
        wanted = [bool(o) and o in self.read for o in node.output]
        n = OnnxNode(node, opset=self.opset, builder=self.b, inputs=inputs, loc=loc, wanted=wanted)
        mark = len(self.b.nodes)
        try:
            # A converter may return more values than the node declares (optional outputs the
            # model leaves out): those stay unnamed intermediates.
            outs = list(conv.fn(n))
        except Error as e:
            prefix = n.describe()
            if str(e).startswith(prefix):
                raise
            raise type(e)(f"{prefix}: {e}") from e
        renamed: dict[str, str] = {}
        for k, onnx_name in enumerate(node.output):
            if not onnx_name:
                continue
            if k >= len(outs):
                self.dropped[onnx_name] = (
                    f"{n.describe()}: output {k} ({onnx_name!r}) is not supported by modelc"
                )
                continue
            value = outs[k]
            if value not in renamed and self._is_new(value, mark):
                renamed[value] = self._rename(value, onnx_name, mark)
            self._bind(onnx_name, renamed.get(value, value))

    def _resolve(self, onnx_name: str) -> str:
        if not onnx_name:
            return ""
        if onnx_name in self.dropped:
            raise UnsupportedOpError(self.dropped[onnx_name] + ", but the model reads it")
        return self.env[onnx_name]

    def _is_new(self, value: str, mark: int) -> bool:
        """Whether the current converter made `value` (it then takes the ONNX output's name)."""
        if value in self.origin:
            return False
        return value in self.b.constants or any(
            o.name == value for node in self.b.nodes[mark:] for o in node.outputs
        )

    def _rename(self, value: str, onnx_name: str, mark: int) -> str:
        """Give a value the current converter made the ONNX name of the output it stands for."""
        b = self.b
        new = b.fresh(onnx_name)
        b.types[new] = b.types.pop(value)
        if value in b.constants:
            c = b.constants.pop(value)
            b.constants[new] = Constant(Value(new, c.value.type), c.data)
        for k in range(mark, len(b.nodes)):
            node = b.nodes[k]
            if value in node.inputs or any(o.name == value for o in node.outputs):
                b.nodes[k] = replace(
                    node,
                    inputs=tuple(new if i == value else i for i in node.inputs),
                    outputs=tuple(
                        Value(new, o.type) if o.name == value else o for o in node.outputs
                    ),
                )
        return new

    # ---- graph outputs -----------------------------------------------------------------------

    def _set_outputs(self) -> None:
        """The ONNX graph outputs, in order. An output that aliases another ONNX value (through
        Identity, Dropout, a no-op Reshape) takes the output's name when a node makes it; one
        listed twice gets a copy, so output names stay unique."""
        outputs: list[str] = []
        producers = {o.name: k for k, node in enumerate(self.b.nodes) for o in node.outputs}
        for out in self.g.output:
            value = self._resolve_output(out.name)
            if value in outputs:
                (value,) = self.b.add_node("copy", [value], loc=out.name, hints=[out.name])
            elif value in producers and self.origin.get(value) != out.name:
                value = self._rename_everywhere(value, out.name, producers[value])
            outputs.append(value)
        self.b.set_outputs(outputs)

    def _resolve_output(self, name: str) -> str:
        if name in self.dropped:
            raise UnsupportedOpError(self.dropped[name] + ", but it is a graph output")
        if name not in self.env:
            raise ModelLoadError(
                f"{self.source}: graph output {name!r} is not defined by any node, initializer "
                "or graph input (a broken or truncated model)"
            )
        return self.env[name]

    def _rename_everywhere(self, value: str, onnx_name: str, producer: int) -> str:
        new = self._rename(value, onnx_name, producer)
        self.origin[new] = onnx_name
        for k, v in self.env.items():
            if v == value:
                self.env[k] = new
        return new
