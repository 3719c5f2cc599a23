"""ONNX element types and tensors -> modelc dtypes and numpy arrays.

modelc stores sub-byte integers one element per byte (see `ir/dtypes.py`), so int4/uint4 tensors
come back as int8/uint8 arrays whose `TensorType` says i4/u4. Element types modelc has no dtype
for (float8, float4, int2, string, complex) are rejected here, by tensor name, so the user learns
which tensor of the model is the problem.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from modelc.errors import ModelLoadError, UnsupportedTypeError
from modelc.ir import dtypes as D
from modelc.ir.dtypes import DType
from modelc.ir.types import TensorType

_TO_MODELC: dict[int, DType] = {
    TensorProto.FLOAT: D.f32,
    TensorProto.DOUBLE: D.f64,
    TensorProto.FLOAT16: D.f16,
    TensorProto.BFLOAT16: D.bf16,
    TensorProto.INT64: D.i64,
    TensorProto.INT32: D.i32,
    TensorProto.INT16: D.i16,
    TensorProto.INT8: D.i8,
    TensorProto.INT4: D.i4,
    TensorProto.UINT64: D.u64,
    TensorProto.UINT32: D.u32,
    TensorProto.UINT16: D.u16,
    TensorProto.UINT8: D.u8,
    TensorProto.UINT4: D.u4,
    TensorProto.BOOL: D.boolean,
}


def type_name(elem_type: int) -> str:
    """`FLOAT8E4M3FN` for 17; the number itself when onnx does not know it."""
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return str(elem_type)


def to_dtype(elem_type: int, what: str) -> DType:
    """The modelc dtype of an ONNX element type; `what` names the tensor for the message."""
    dt = _TO_MODELC.get(elem_type)
    if dt is None:
        raise UnsupportedTypeError(
            f"{what} has element type {type_name(elem_type)}, which modelc does not support "
            "(it compiles float32/64, float16, bfloat16, int64..int4, uint64..uint4 and bool); "
            "convert the model to one of those types first"
        )
    return dt


def tensor_to_array(t: TensorProto, what: str) -> tuple[np.ndarray, TensorType]:
    """A TensorProto as a numpy array in modelc's storage dtype, with its modelc type."""
    dt = to_dtype(t.data_type, what)
    if t.data_location == TensorProto.EXTERNAL:
        location = next((e.value for e in t.external_data if e.key == "location"), "?")
        raise ModelLoadError(
            f"{what} keeps its data in the external file {location!r}, which was not loaded; "
            "load the model from its path (not from bytes or a ModelProto) so modelc finds the "
            "file next to it"
        )
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:  # onnx raises several types for malformed tensors
        raise ModelLoadError(f"{what} cannot be read (malformed tensor data: {e})") from e
    arr = np.asarray(arr)
    if arr.dtype != dt.numpy:
        arr = arr.astype(dt.numpy)
    return arr, TensorType(arr.shape, dt)


def sparse_to_array(s: onnx.SparseTensorProto, what: str) -> tuple[np.ndarray, TensorType]:
    """A SparseTensorProto (Constant's `sparse_value`) as a dense array."""
    values, vtype = tensor_to_array(s.values, what)
    indices = numpy_helper.to_array(s.indices).astype(np.int64) if s.HasField("indices") else None
    shape = tuple(int(d) for d in s.dims)
    dense = np.zeros(shape, dtype=values.dtype)
    if indices is not None and values.size:
        if indices.ndim == 1:  # linearized indices
            dense.reshape(-1)[indices] = values
        else:  # one row of coordinates per value
            dense[tuple(indices.T)] = values
    return dense, TensorType(shape, vtype.dtype)
