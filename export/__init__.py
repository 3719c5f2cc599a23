"""Export of modelc graphs to ONNX.

    from modelc.export import export_onnx, export_qdq, to_onnx
    export_qdq("model.onnx", "model_qdq.onnx", calibration="calib.npz")  # quantized, QDQ form
    export_onnx(graph, "graph.onnx")                                      # any graph IR
    model = to_onnx(graph)                                                # onnx.ModelProto

docs/export.md has the op coverage and the measured agreement with the compiled library.

The names load on first use (PEP 562), so the CLI can import `modelc.export.cli` to build its
parser without importing onnx: `modelc --help` stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelc.export.cli import add_export_parser, cmd_export
    from modelc.export.onnx_export import (
        BASE_OPSET,
        ExportError,
        export_onnx,
        exportable_ops,
        exporter,
        to_onnx,
    )
    from modelc.export.qdq import export_qdq, qdq_graph, to_uint8_activations, write_qdq

# public name -> the module defining it
_WHERE = {
    "add_export_parser": "modelc.export.cli",
    "cmd_export": "modelc.export.cli",
    "BASE_OPSET": "modelc.export.onnx_export",
    "ExportError": "modelc.export.onnx_export",
    "export_onnx": "modelc.export.onnx_export",
    "exportable_ops": "modelc.export.onnx_export",
    "exporter": "modelc.export.onnx_export",
    "to_onnx": "modelc.export.onnx_export",
    "export_qdq": "modelc.export.qdq",
    "qdq_graph": "modelc.export.qdq",
    "to_uint8_activations": "modelc.export.qdq",
    "write_qdq": "modelc.export.qdq",
}

__all__ = [
    "BASE_OPSET",
    "ExportError",
    "add_export_parser",
    "cmd_export",
    "export_onnx",
    "export_qdq",
    "exportable_ops",
    "exporter",
    "qdq_graph",
    "to_onnx",
    "to_uint8_activations",
    "write_qdq",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'modelc.export' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
