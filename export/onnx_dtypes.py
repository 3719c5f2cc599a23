"""modelc dtypes and constants -> ONNX element types and tensors.

The inverse of the frontend's `onnx_ops/dtypes.py`. modelc keeps sub-byte integers one element
per byte (`ir/dtypes.py`); ONNX packs INT4 / UINT4 two to a byte, so those constants go through
`onnx.helper.make_tensor`, which does the packing. Types ONNX has no element type for
(`fixed<W,I>`, the HLS target's) are an export error naming the value.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from modelc.errors import UnsupportedTypeError
from modelc.ir import dtypes as D
from modelc.ir.dtypes import DType
from modelc.ir.types import TensorType

_TO_ONNX: dict[DType, int] = {
    D.f32: TensorProto.FLOAT,
    D.f64: TensorProto.DOUBLE,
    D.f16: TensorProto.FLOAT16,
    D.bf16: TensorProto.BFLOAT16,
    D.i64: TensorProto.INT64,
    D.i32: TensorProto.INT32,
    D.i16: TensorProto.INT16,
    D.i8: TensorProto.INT8,
    D.i4: TensorProto.INT4,
    D.u64: TensorProto.UINT64,
    D.u32: TensorProto.UINT32,
    D.u16: TensorProto.UINT16,
    D.u8: TensorProto.UINT8,
    D.u4: TensorProto.UINT4,
    D.boolean: TensorProto.BOOL,
}

# Element types ONNX stores packed (two per byte); modelc stores them one per byte.
_PACKED = (D.i4, D.u4)


def onnx_type(dt: DType, what: str = "a value") -> int:
    """The ONNX element type of `dt`; `what` names the value for the message."""
    try:
        return _TO_ONNX[dt]
    except KeyError:
        raise UnsupportedTypeError(
            f"{what} has element type {dt}, which ONNX cannot represent; export a graph from "
            "before the pass that introduced it"
        ) from None


def value_info(name: str, t: TensorType, what: str = "") -> object:
    """A ValueInfoProto with the static shape and element type of `t`."""
    return helper.make_tensor_value_info(
        name, onnx_type(t.dtype, what or f"value {name!r}"), list(t.shape)
    )


def make_tensor(name: str, data: np.ndarray, dt: DType | None = None) -> TensorProto:
    """An initializer holding `data` as element type `dt` (default: the array's own)."""
    arr = np.asarray(data)
    dt = dt or D.from_numpy(arr.dtype)
    elem = onnx_type(dt, f"constant {name!r}")
    if dt in _PACKED:
        return helper.make_tensor(name, elem, list(arr.shape), arr.astype(np.int32).ravel())
    arr = np.asarray(arr, dtype=dt.numpy, order="C")  # (ascontiguousarray makes 0-d 1-d)
    if dt == D.bf16 and arr.dtype == np.float32:  # no ml_dtypes: bf16 lives as f32
        return helper.make_tensor(name, elem, list(arr.shape), arr.ravel())
    return numpy_helper.from_array(arr, name)
