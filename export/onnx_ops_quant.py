"""Quantization IR ops -> ONNX QuantizeLinear / DequantizeLinear, and the ops that cannot go.

`quantize` / `dequantize` are ONNX's QuantizeLinear / DequantizeLinear by definition
(`ir/ops/quant.py`): round half to even in float32, saturate, per tensor or per axis. The IR
keeps scales and zero points as attributes; ONNX takes them as inputs, so each node gets its
own initializers `<output>.scale` (float32: 0-d per tensor, 1-D per axis) and
`<output>.zero_point` (of the integer type, INT4 packed for int4 weights). 4-bit and 16-bit
types need opset 21; 8-bit and int32 ones are opset 20 (see `onnx_export`). An int32 bias's
all-zero zero point is left out, as quantizers write it, so onnxruntime's QDQ fusions recognize
the bias. The IR's other float types are casts around the f32 arithmetic the IR defines.

The integer ops `fold-qdq` makes (qconv, qmatmul, requantize) are not exported: requantize is
TFLite fixed-point arithmetic that ONNX has no op for, and the QDQ form before `fold-qdq` says
the same thing in a form every ONNX runtime fuses into its own integer kernels.
"""

from __future__ import annotations

import numpy as np

from modelc.export.onnx_export import NodeExport, exporter, not_exportable
from modelc.ir import dtypes as D
from modelc.ir.dtypes import DType

# Integer types QuantizeLinear / DequantizeLinear take only from opset 21.
OPSET_21_TYPES = (D.i4, D.u4, D.i16, D.u16)


def _params(e: NodeExport, int_type: DType, *, zero_point: bool = True) -> list[str]:
    """[scale, zero point] initializers (the zero point left out when `zero_point` is False)."""
    if int_type in OPSET_21_TYPES:
        e.require_opset(21)
    a = e.attrs
    per_axis = a["axis"] is not None
    scale = np.asarray(a["scale"], np.float32)
    zp = np.asarray(a["zero_point"], np.int64)
    if not per_axis:
        scale, zp = scale.reshape(()), zp.reshape(())
    out = e.outputs[0]
    names = [e.const(scale, D.f32, f"{out}.scale")]
    if zero_point:
        names.append(e.const(zp.astype(int_type.numpy), int_type, f"{out}.zero_point"))
    return names


@exporter("quantize")
def quantize(e: NodeExport) -> None:
    x = e.inputs[0]
    if e.in_type(0).dtype != D.f32:
        (x,) = e.emit("Cast", [x], to=D.f32)
    axis = e.attrs["axis"]
    e.emit_out("QuantizeLinear", [x, *_params(e, e.attrs["to"])], axis=axis)


@exporter("dequantize")
def dequantize(e: NodeExport) -> None:
    x_t = e.in_type(0)
    keep_zp = x_t.dtype != D.i32 or any(int(z) for z in e.attrs["zero_point"])
    ins = [e.inputs[0], *_params(e, x_t.dtype, zero_point=keep_zp)]
    axis = e.attrs["axis"]
    if e.attrs["to"] == D.f32:
        e.emit_out("DequantizeLinear", ins, axis=axis)
        return
    (y,) = e.emit("DequantizeLinear", ins, axis=axis)
    e.emit_out("Cast", [y], to=e.attrs["to"])


_AFTER_FOLD_QDQ = (
    "it is an integer op made by `fold-qdq`, and ONNX has no op for its fixed-point "
    "requantization; export the QDQ graph from before `fold-qdq` instead "
    "(modelc.export.export_qdq, or `modelc export MODEL --calibration ...`)"
)
for _op in ("qconv", "qmatmul", "requantize"):
    not_exportable(_op, _AFTER_FOLD_QDQ)
