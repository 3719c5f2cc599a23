"""Quantize a model as `cpu-int8` does and write it as a QDQ ONNX model.

    modelc.export.export_qdq("model.onnx", "model_qdq.onnx", calibration="calib.npz")

The graph written is the one the `cpu-int8` pipeline holds right after its `quantize` pass
(fold-constants, canonicalize, fold-batchnorm, quantize): float ops between QuantizeLinear and
DequantizeLinear, int8 (or int4) weights and int32 biases behind DequantizeLinear. That is the
form every ONNX runtime reads as a quantized model (onnxruntime fuses it into QLinearConv /
QLinearMatMul / QGemm), and it is where modelc's own integer graph comes from: `fold-qdq` turns
the same graph into qconv / qmatmul + requantize. Exporting before `fold-qdq` therefore carries
the exact quantization decisions (ranges, scales, zero points, rounded weights) of the library
`modelc.compile(..., target="cpu-int8")` builds, and onnxruntime's integer kernels, which
requantize with one float rounding as the cpu target's default `rounding=single` does, compute
the same numbers up to the float islands (residual adds, average pools) that both runtimes keep
in float with their own summation order.

Activations are written as uint8 by default (zero point + 128: the same real values as modelc's
int8 ones), because that is what onnxruntime's x86 integer kernels take; `activations="int8"`
writes modelc's own element type (`to_uint8_activations` has the measurements).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modelc.errors import InputError
from modelc.export.onnx_export import export_onnx
from modelc.ir import dtypes as D
from modelc.ir.graph import Graph, Node, Value
from modelc.ir.opdef import get_op

# Which target's pipeline the quantized graph comes from.
TARGET = "cpu-int8"


def qdq_graph(
    model: Any,
    *,
    calibration: Mapping[str, Any] | str | os.PathLike[str],
    quant_config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    **options: Any,
) -> tuple[Graph, dict[str, Any]]:
    """(the QDQ graph, the pass reports) of `model` after the `cpu-int8` graph passes up to and
    including `quantize`. `options` go to `modelc.api.import_model` (`example_inputs=` for a
    torch module)."""
    from modelc.api import import_model, load_calibration, with_quant_config
    from modelc.passes.quantize import Quantize
    from modelc.passes.registry import PassContext, format_pipeline, parse_pipeline, run_pipeline
    from modelc.targets.registry import get_target

    graph = import_model(model, input_shapes, **options)
    passes = parse_pipeline(get_target(TARGET).pipeline)
    end = next(i for i, p in enumerate(passes) if isinstance(p, Quantize))
    passes = passes[: end + 1]
    if quant_config is not None:
        passes = with_quant_config(passes, quant_config)
    ctx = PassContext(calibration=load_calibration(calibration))
    out = run_pipeline(graph, passes, ctx)
    reports = {**ctx.reports, "pipeline": format_pipeline(passes)}
    return out, reports


def export_qdq(
    model: Any,
    path: str | os.PathLike[str],
    *,
    calibration: Mapping[str, Any] | str | os.PathLike[str],
    quant_config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    activations: str = "uint8",
    **options: Any,
) -> Path:
    """Quantize `model` (a path, bytes, ModelProto, Graph, or torch module with
    `example_inputs=`) from `calibration` (one array per input name, samples along axis 0, or an
    .npz path) as target `cpu-int8` would, with `quant_config` replacing the quantize pass's
    options, and write the QDQ graph as an ONNX file at `path` (opset 20, 21 for int4; checked with
    onnx.checker). `activations` is the element type activations are stored as: "uint8" (the
    default; the same values as modelc's int8, see `to_uint8_activations` for why) or "int8"
    (modelc's own). Returns the path."""
    graph, reports = qdq_graph(
        model,
        calibration=calibration,
        quant_config=quant_config,
        input_shapes=input_shapes,
        **options,
    )
    return write_qdq(graph, reports, path, activations=activations)


def write_qdq(
    graph: Graph,
    reports: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    activations: str = "uint8",
) -> Path:
    """Write what `qdq_graph` returned as an ONNX file with activations stored as
    `activations` (a key of ACTIVATIONS), the pipeline and the quantization config in its
    metadata (`modelc.pipeline`, `modelc.quant_config`)."""
    if activations not in ACTIVATIONS:
        raise InputError(
            f"activations {activations!r}: choose one of {', '.join(sorted(ACTIVATIONS))}"
        )
    graph = ACTIVATIONS[activations](graph)
    config = reports.get("quantize", {}).get("config", {})
    metadata = {"modelc.pipeline": reports["pipeline"], "modelc.quant_config": json.dumps(config)}
    doc = f"quantized by modelc ({TARGET} passes: {reports['pipeline']})"
    return export_onnx(graph, path, doc=doc, metadata=metadata)


def to_uint8_activations(graph: Graph) -> Graph:
    """The same graph with int8 activations stored as uint8: every quantize of a run-time value
    to i8 whose result only dequantizes read becomes a quantize to u8 with zero point + 128,
    and its dequantizes take that zero point too. The real values are identical (q_u8 = q_i8 +
    128 on the shifted range, so saturation and rounding are unchanged), but onnxruntime's x86
    kernels want uint8 activations: it converts int8 ones itself only where a QuantizeLinear
    feeds a single DequantizeLinear, so a value read by several layers (a residual block's
    input) keeps those layers' convs in float (measured on the zoo ResNet-18: 9 of 20 convs
    integer with int8 activations, 20 of 20 with uint8, and then bit-exact with the cpu-int8
    library). Weights (constants) stay int8."""
    users = graph.users
    moved = {
        n.output.name
        for n in graph.nodes
        if n.op == "quantize"
        and n.attrs["to"] == D.i8
        and n.inputs[0] not in graph.constant_map
        and n.output.name not in graph.outputs
        and all(u.op == "dequantize" for u in users.get(n.output.name, ()))
    }
    types = dict(graph.types)
    nodes: list[Node] = []
    for n in graph.nodes:
        if n.op == "quantize" and n.output.name in moved:
            n = _shift_zero_point(n, types, to=D.u8)
        elif n.op == "dequantize" and n.inputs[0] in moved:
            n = _shift_zero_point(n, types)
        nodes.append(n)
    return graph.replace(nodes=tuple(nodes))


def _shift_zero_point(n: Node, types: dict[str, Any], **changes: Any) -> Node:
    """`n` with its zero points + 128 (and `changes`), its output type inferred again."""
    zp = [int(z) + 128 for z in n.attrs["zero_point"]]
    attrs = n.attrs.replace(zero_point=zp, **changes)
    (t,) = get_op(n.op).infer_types([types[i] for i in n.inputs], attrs, loc=n.loc)
    types[n.output.name] = t
    return Node(n.op, n.inputs, (Value(n.output.name, t),), attrs, n.loc)


# How activations are stored in the exported file: name -> graph rewrite.
ACTIVATIONS: dict[str, Callable[[Graph], Graph]] = {
    "uint8": to_uint8_activations,
    "int8": lambda graph: graph,
}
