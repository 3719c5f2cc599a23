"""concat: join tensors along one axis (variadic).

Every input is one contiguous copy into its band of the output: with the dims before `axis`
collapsed into `outer` and the rest into rows, input k is `for o in outer: for j in row_k:
out[o * row_out + offset_k + j] = in_k[o * row_k + j]`, where `row_k = len_k * inner`. One kernel
holds one such nest per input, so a shape-subgraph concat of scalars costs no more than a loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.loop import Kernel
from modelc.ir.opdef import INJECTIVE, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import params_for, same_dtype
from modelc.ir.ops.tensor_copy import AffineCopy, copy_stmt, result_type
from modelc.ir.types import TensorType


def _axis(types: Sequence[TensorType], attrs: Attrs) -> int:
    rank = types[0].rank
    axis = attrs["axis"]
    if not isinstance(axis, int) or not 0 <= axis < rank:
        raise ShapeError(
            f"concat: axis {axis!r} is out of range for rank-{rank} inputs (the frontend must "
            "make it non-negative)"
        )
    return axis


def _infer(types: Sequence[TensorType | None], attrs: Attrs) -> list[TensorType]:
    ts = [t for t in types if t is not None]
    if len(ts) != len(types):
        raise ShapeError("concat: inputs cannot be absent")
    dt = same_dtype(ts, "concat")
    first = ts[0]
    if first.rank == 0:
        raise ShapeError("concat: inputs must have rank >= 1 (got a scalar)")
    axis = _axis(ts, attrs)
    for k, t in enumerate(ts[1:], 1):
        if t.rank != first.rank or any(
            a != b for d, (a, b) in enumerate(zip(t.shape, first.shape)) if d != axis
        ):
            raise ShapeError(
                f"concat: input {k} has shape {t.shape}, which does not match input 0 "
                f"{first.shape} outside axis {axis}"
            )
        if t.quant != first.quant:
            raise ShapeError(
                f"concat: input {k} is quantized differently from input 0 ({t.quant} vs "
                f"{first.quant}); requantize the inputs to one scale first"
            )
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in ts)
    out = result_type("concat", first, shape, lambda a: None if a == axis else a)
    return [TensorType(out.shape, dt, out.quant)]


def _lower(req: LowerRequest) -> Kernel:
    out_t = req.out_types[0]
    axis = _axis(req.in_types, req.node.attrs)
    outer = math.prod(out_t.shape[:axis])
    inner = math.prod(out_t.shape[axis + 1 :])
    row_out = out_t.shape[axis] * inner
    nests = []
    offset = 0
    for k, t in enumerate(req.in_types):
        row = t.shape[axis] * inner
        copy = AffineCopy((outer, row), (row, 1), (row_out, 1), 0, offset)
        nests.append(copy_stmt(copy, out_t.dtype, req.schedule, src=f"in{k}"))
        offset += row
    return Kernel(req.kernel_name, params_for(req), L.Seq(tuple(nests)), (("op", "concat"),))


register_op(
    OpDef(
        name="concat",
        infer=_infer,
        reference=lambda xs, a: [np.concatenate(list(xs), axis=a["axis"])],
        attrs={"axis": AttrSpec("int", doc="non-negative axis to join along")},
        num_inputs=(1, -1),
        traits=frozenset({INJECTIVE}),
        lower=_lower,
        doc="numpy.concatenate / ONNX Concat. Inputs agree in dtype, rank, quantization and "
        "every dim but `axis`.",
    )
)
