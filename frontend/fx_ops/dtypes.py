"""torch dtypes <-> modelc dtypes.

Imported only once torch is (the fx frontend imports torch lazily), so `torch` is imported inside.
"""

from __future__ import annotations

from typing import Any

from modelc.errors import UnsupportedTypeError
from modelc.ir import dtypes as D
from modelc.ir.dtypes import DType


def _table() -> dict[Any, DType]:
    import torch

    return {
        torch.float64: D.f64,
        torch.float32: D.f32,
        torch.float16: D.f16,
        torch.bfloat16: D.bf16,
        torch.int64: D.i64,
        torch.int32: D.i32,
        torch.int16: D.i16,
        torch.int8: D.i8,
        torch.uint8: D.u8,
        torch.bool: D.boolean,
    }


def to_dtype(dtype: Any, what: str) -> DType:
    """The modelc dtype of a torch dtype; `what` names the tensor for the error."""
    found = _table().get(dtype)
    if found is None:
        raise UnsupportedTypeError(
            f"{what}: element type {dtype} is not supported by modelc (float64/32/16, bfloat16, "
            "int64/32/16/8, uint8 and bool are)"
        )
    return found


def to_torch(dtype: DType) -> Any:
    """The torch dtype of a modelc dtype (None when torch has none)."""
    return {v: k for k, v in _table().items()}.get(dtype)


def tensor_to_array(t: Any) -> Any:
    """A detached CPU numpy copy of a torch tensor (bfloat16 through its bits, so no rounding)."""
    import numpy as np
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        storage = D.bf16.numpy
        if storage == np.dtype(np.float32):  # no ml_dtypes: bf16 lives as f32
            return t.float().numpy().copy()
        return t.view(torch.int16).numpy().view(storage).copy()
    return t.numpy().copy()


def array_to_tensor(a: Any) -> Any:
    """A torch tensor of a numpy array (inverse of `tensor_to_array`)."""
    import numpy as np
    import torch

    a = np.asarray(a)
    if a.dtype.kind == "V" or a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())
