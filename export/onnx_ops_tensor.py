"""Data-movement and reduction IR ops -> ONNX: reshape, transpose, concat, slice, pad, expand,
tile, gather / scatter, depth <-> space, resize, reductions, arg-reductions, topk, cumsum.

The IR keeps shapes, axes and pads as attributes, fully resolved at import (no -1, no 0 copies,
no negative axes); from opset 13 / 18 ONNX takes most of them as int64 input tensors, so they
become small initializers here. Where the IR's normal form differs from ONNX's reading of the
same numbers, the exporter converts:

- reshape: a 0 in the IR shape is a real empty dim, not ONNX's "copy the input dim"
  (allowzero=1 then);
- slice: the IR's clamped (start, end, step) with end = -1 meaning "through index 0" becomes
  ONNX's INT64_MIN end; an empty dim is start = end = 0;
- reductions: empty IR axes mean all axes, written out;
- resize: the IR has both sizes and float32 scales; ONNX takes one. Scales when they give the
  sizes (floor(in * scale)), else sizes (whose derived scales are the IR's, size / in).
"""

from __future__ import annotations

import math

import numpy as np

from modelc.export.onnx_export import ExporterFn, NodeExport, exporter, register_exporter

INT64_MIN = -(2**63)


@exporter("reshape")
def reshape(e: NodeExport) -> None:
    shape = list(e.attrs["shape"])
    e.emit_out("Reshape", [e.inputs[0], e.ints(shape)], allowzero=1 if 0 in shape else None)


@exporter("transpose")
def transpose(e: NodeExport) -> None:
    e.emit_out("Transpose", e.inputs, perm=e.attrs["perm"])


@exporter("concat")
def concat(e: NodeExport) -> None:
    e.emit_out("Concat", e.inputs, axis=e.attrs["axis"])


@exporter("expand")
def expand(e: NodeExport) -> None:
    e.emit_out("Expand", [e.inputs[0], e.ints(e.attrs["shape"])])


@exporter("tile")
def tile(e: NodeExport) -> None:
    e.emit_out("Tile", [e.inputs[0], e.ints(e.attrs["repeats"])])


@exporter("slice")
def slice_(e: NodeExport) -> None:
    starts, ends, steps = [], [], []
    for s, end, step in zip(e.attrs["starts"], e.attrs["ends"], e.attrs["steps"]):
        n = max(0, math.ceil((end - s) / step))
        if n == 0:
            s, end, step = 0, 0, 1
        else:
            end = s + n * step
            end = INT64_MIN if end < 0 else end
        starts.append(s)
        ends.append(end)
        steps.append(step)
    axes = list(range(len(starts)))
    e.emit_out("Slice", [e.inputs[0], e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)])


@exporter("pad")
def pad(e: NodeExport) -> None:
    mode = e.attrs["mode"]
    ins = [e.inputs[0], e.ints(e.attrs["pads"])]
    if mode == "constant":
        ins.append(e.scalar(e.attrs["value"], e.in_type(0).dtype))
    e.emit_out("Pad", ins, mode=mode)


# (IR op, ONNX op, attributes copied verbatim).
SIMPLE = [
    ("gather", "Gather", ("axis",)),
    ("gather_elements", "GatherElements", ("axis",)),
    ("scatter_nd", "ScatterND", ("reduction",)),
    ("depth_to_space", "DepthToSpace", ("blocksize", "mode")),
    ("space_to_depth", "SpaceToDepth", ("blocksize",)),
    ("argmax", "ArgMax", ("axis", "keepdims", "select_last_index")),
    ("argmin", "ArgMin", ("axis", "keepdims", "select_last_index")),
]


def _simple(onnx_op: str, names: tuple[str, ...]) -> ExporterFn:
    def export(e: NodeExport) -> None:
        e.emit_out(onnx_op, e.inputs, **{k: e.attrs[k] for k in names})

    return export


for _ir, _onnx, _names in SIMPLE:
    register_exporter(_ir, _simple(_onnx, _names))


# ---- reductions ----------------------------------------------------------------------------

REDUCE = {
    "reduce_sum": "ReduceSum",
    "reduce_mean": "ReduceMean",
    "reduce_max": "ReduceMax",
    "reduce_min": "ReduceMin",
    "reduce_prod": "ReduceProd",
}


@exporter(*REDUCE)
def reduce(e: NodeExport) -> None:
    axes = list(e.attrs["axes"]) or list(range(e.in_type(0).rank))
    ins = [e.inputs[0], e.ints(axes)] if axes else [e.inputs[0]]
    e.emit_out(REDUCE[e.node.op], ins, keepdims=e.attrs["keepdims"])


@exporter("topk")
def topk(e: NodeExport) -> None:
    """sorted=1 always: the IR gives the sorted order either way, ONNX leaves it open."""
    a = e.attrs
    e.emit_out("TopK", [e.inputs[0], e.ints([a["k"]])], axis=a["axis"], largest=a["largest"])


@exporter("cumsum")
def cumsum(e: NodeExport) -> None:
    a = e.attrs
    axis = e.const(np.asarray(a["axis"], np.int64))
    e.emit_out("CumSum", [e.inputs[0], axis], exclusive=a["exclusive"], reverse=a["reverse"])


# ---- resize --------------------------------------------------------------------------------


@exporter("resize")
def resize(e: NodeExport) -> None:
    a = e.attrs
    shape = e.in_type(0).shape
    scales = np.asarray(a["scales"], np.float32)
    sizes = [int(s) for s in a["sizes"]]
    attrs = {
        "mode": a["mode"],
        "coordinate_transformation_mode": a["coordinate_transformation_mode"],
        "cubic_coeff_a": a["cubic_coeff_a"],
        "exclude_outside": a["exclude_outside"],
    }
    floor_sizes = [int(math.floor(float(d) * float(s))) for d, s in zip(shape, scales)]
    if floor_sizes == sizes:
        e.emit_out("Resize", [e.inputs[0], "", e.const(scales)], **attrs)
        return
    derived = [np.float32(s) / np.float32(d) for s, d in zip(sizes, shape)]
    if not np.array_equal(np.asarray(derived, np.float32), scales):
        raise e.error(
            f"sizes {sizes} and scales {scales.tolist()} of input {list(shape)} agree with "
            "neither ONNX reading (floor(in * scale), or scale = size / in); ONNX Resize "
            "cannot express them"
        )
    e.emit_out("Resize", [e.inputs[0], "", "", e.ints(sizes)], **attrs)
