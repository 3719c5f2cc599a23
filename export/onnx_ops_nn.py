"""Neural-network IR ops -> ONNX: conv, conv_transpose, matmul, pooling, normalizations,
softmax and attention.

The IR's attributes are already ONNX's normal form (the frontend resolved auto_pad into
explicit pads, "all begins, then all ends" as in ONNX, and kernel shapes come from the
weight), so these exporters mostly rename. Two IR features have no single ONNX op:

- `layout="nhwc"` (set late by the `layout` pass): ONNX Conv and pools are channels-first, so
  the op is wrapped in Transposes (and an NHWC conv's packed weight [*K, C/g, M] is transposed
  back to [M, C/g, *K]; onnxruntime folds that for a constant weight);
- `attention` (ONNX's Attention op is opset 23, past the opsets used here): the matmul / scale /
  mask / softmax / matmul chain that exporters write and `fuse-patterns` recognizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelc.export.onnx_export import NodeExport, exporter
from modelc.ir.ops.nn import nhwc_weight_perm
from modelc.ir.ops.window import layout_of, to_first, to_last


def _channels_first(
    e: NodeExport, op_type: str, inputs: Sequence[str], extra: Sequence[str] = (), **attrs: Any
) -> None:
    """Emit `op_type` on channels-first operands, transposing in and out for NHWC nodes.
    `inputs` are the activation-like inputs (x); `extra` follow unchanged (bias)."""
    if layout_of(e.attrs, e.node.op) != "nhwc":
        e.emit_out(op_type, [*inputs, *extra], **attrs)
        return
    rank = e.in_type(0).rank
    (x,) = e.emit("Transpose", [inputs[0]], perm=list(to_first(rank)))
    (y,) = e.emit(op_type, [x, *inputs[1:], *extra], **attrs)
    e.emit_out("Transpose", [y], perm=list(to_last(rank)))


@exporter("conv")
def conv(e: NodeExport) -> None:
    x, w, *bias = e.inputs
    w_t = e.in_type(1)
    kernel = list(w_t.shape[2:])
    if layout_of(e.attrs, "conv") == "nhwc":
        unpack = [int(i) for i in np.argsort(nhwc_weight_perm(w_t.rank))]
        (w,) = e.emit("Transpose", [w], perm=unpack)
        kernel = [w_t.shape[i] for i in unpack][2:]
    _channels_first(
        e,
        "Conv",
        [x, w],
        [b for b in bias if b],
        kernel_shape=kernel,
        strides=e.attrs["strides"],
        pads=e.attrs["pads"],
        dilations=e.attrs["dilations"],
        group=e.attrs["group"],
    )


@exporter("conv_transpose")
def conv_transpose(e: NodeExport) -> None:
    a = e.attrs
    e.emit_out(
        "ConvTranspose",
        [i for i in e.inputs if i],
        kernel_shape=list(e.in_type(1).shape[2:]),
        strides=a["strides"],
        pads=a["pads"],
        dilations=a["dilations"],
        group=a["group"],
        output_padding=a["output_padding"],
    )


@exporter("matmul")
def matmul(e: NodeExport) -> None:
    e.emit_out("MatMul", e.inputs)


@exporter("max_pool", "avg_pool")
def pool(e: NodeExport) -> None:
    a = e.attrs
    attrs: dict[str, Any] = {
        "kernel_shape": a["kernel"],
        "strides": a["strides"],
        "pads": a["pads"],
        "ceil_mode": a["ceil_mode"],
    }
    if e.node.op == "max_pool":
        attrs["dilations"] = a.get("dilations")
        op_type = "MaxPool"
    else:
        attrs["count_include_pad"] = a["count_include_pad"]
        op_type = "AveragePool"
    _channels_first(e, op_type, [e.inputs[0]], **attrs)


@exporter("batch_norm")
def batch_norm(e: NodeExport) -> None:
    e.emit_out("BatchNormalization", e.inputs, epsilon=e.attrs["epsilon"])


@exporter("lrn")
def lrn(e: NodeExport) -> None:
    a = e.attrs
    e.emit_out("LRN", e.inputs, size=a["size"], alpha=a["alpha"], beta=a["beta"], bias=a["bias"])


@exporter("softmax", "log_softmax")
def softmax(e: NodeExport) -> None:
    op_type = {"softmax": "Softmax", "log_softmax": "LogSoftmax"}[e.node.op]
    e.emit_out(op_type, e.inputs, axis=e.attrs["axis"])


@exporter("layer_norm")
def layer_norm(e: NodeExport) -> None:
    """ONNX wants Scale (the IR's optional gamma) and, like onnxruntime, params of the
    normalized shape: absent gamma is ones, smaller params are expanded."""
    x_t = e.in_type(0)
    axis = int(e.attrs["axis"])
    normalized = tuple(x_t.shape[axis:])
    params: list[str] = []
    for k in (1, 2):
        name = e.inputs[k] if k < len(e.inputs) else ""
        if not name:
            params.append(e.const(np.ones(normalized), x_t.dtype) if k == 1 else "")
            continue
        if e.in_type(k).shape != normalized:
            (name,) = e.emit("Expand", [name, e.ints(normalized)])
        params.append(name)
    while not params[-1]:
        params.pop()
    e.emit_out("LayerNormalization", [e.inputs[0], *params], axis=axis, epsilon=e.attrs["epsilon"])


@exporter("attention")
def attention(e: NodeExport) -> None:
    q, k, v, *mask = e.inputs
    t = e.in_type(0)
    rank = t.rank
    perm = [*range(rank - 2), rank - 1, rank - 2]
    (kt,) = e.emit("Transpose", [k], perm=perm)
    (s,) = e.emit("MatMul", [q, kt])
    (s,) = e.emit("Mul", [s, e.scalar(float(e.attrs["scale"]), t.dtype)])
    if mask and mask[0]:
        (s,) = e.emit("Add", [s, mask[0]])
    (p,) = e.emit("Softmax", [s], axis=-1)
    e.emit_out("MatMul", [p, v])
