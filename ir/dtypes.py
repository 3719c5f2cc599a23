"""Element types of the IR.

A `DType` is a small frozen value (kind + bit width, and the integer bits of a fixed-point
type), printed as `f32`, `i8`, `u4`, `bool`, `fixed<16,6>`. Sub-byte integers (`i4`, `u4`) are
stored one element per byte in numpy arrays (values in range) and packed only by renderers that
want packing; this keeps the interpreter simple and the packing a target decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from modelc.errors import UnsupportedTypeError


@dataclass(frozen=True, order=True)
class DType:
    kind: str  # "float" | "int" | "uint" | "bool" | "fixed"
    bits: int
    int_bits: int = 0  # fixed<W,I> only

    @property
    def name(self) -> str:
        if self.kind == "fixed":
            return f"fixed<{self.bits},{self.int_bits}>"
        if self.kind == "bool":
            return "bool"
        if self.kind == "float" and self.bits == 16 and self.int_bits == 1:
            return "bf16"
        return {"float": "f", "int": "i", "uint": "u"}[self.kind] + str(self.bits)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"DType({self.name})"

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.kind in ("int", "float", "fixed")

    @property
    def itemsize(self) -> int:
        """Bytes one element takes in a modelc buffer (sub-byte types take a whole byte)."""
        return max(1, self.bits // 8) if self.kind != "bool" else 1

    @property
    def numpy(self) -> np.dtype:
        try:
            return _TO_NUMPY[self.name]
        except KeyError:
            raise UnsupportedTypeError(f"dtype {self.name} has no numpy storage type") from None

    @property
    def min(self) -> int | float:
        if self.is_int:
            return -(1 << (self.bits - 1)) if self.kind == "int" else 0
        return float(np.finfo(self.numpy).min)

    @property
    def max(self) -> int | float:
        if self.is_int:
            return (1 << (self.bits - 1)) - 1 if self.kind == "int" else (1 << self.bits) - 1
        return float(np.finfo(self.numpy).max)


f64 = DType("float", 64)
f32 = DType("float", 32)
f16 = DType("float", 16)
# bf16 is marked by int_bits=1 so it differs from f16 while staying a plain frozen value.
bf16 = DType("float", 16, 1)
i64 = DType("int", 64)
i32 = DType("int", 32)
i16 = DType("int", 16)
i8 = DType("int", 8)
i4 = DType("int", 4)
u64 = DType("uint", 64)
u32 = DType("uint", 32)
u16 = DType("uint", 16)
u8 = DType("uint", 8)
u4 = DType("uint", 4)
boolean = DType("bool", 8)


def fixed(width: int, int_bits: int) -> DType:
    """An HLS `ap_fixed<W,I>` type."""
    return DType("fixed", width, int_bits)


def _bf16_numpy() -> np.dtype:
    try:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    except ImportError:  # bf16 arrays then live as f32 in the interpreter
        return np.dtype(np.float32)


_TO_NUMPY: dict[str, np.dtype] = {
    "f64": np.dtype(np.float64),
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": _bf16_numpy(),
    "i64": np.dtype(np.int64),
    "i32": np.dtype(np.int32),
    "i16": np.dtype(np.int16),
    "i8": np.dtype(np.int8),
    "i4": np.dtype(np.int8),
    "u64": np.dtype(np.uint64),
    "u32": np.dtype(np.uint32),
    "u16": np.dtype(np.uint16),
    "u8": np.dtype(np.uint8),
    "u4": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}

_BY_NAME: dict[str, DType] = {
    d.name: d for d in (f64, f32, f16, bf16, i64, i32, i16, i8, i4, u64, u32, u16, u8, u4, boolean)
}

_FIXED_RE = re.compile(r"fixed<(\d+),(\d+)>")


def parse_dtype(text: str) -> DType:
    """Inverse of `DType.name`."""
    if text in _BY_NAME:
        return _BY_NAME[text]
    m = _FIXED_RE.fullmatch(text.replace(" ", ""))
    if m:
        return fixed(int(m.group(1)), int(m.group(2)))
    raise UnsupportedTypeError(f"unknown dtype {text!r}")


def from_numpy(dt: np.dtype | type) -> DType:
    """The DType of a numpy array (sub-byte types cannot be told apart and come back as i8/u8)."""
    dt = np.dtype(dt)
    for name in ("f64", "f32", "f16", "bf16", "i64", "i32", "i16", "i8", "u64", "u32", "u16", "u8"):
        if _TO_NUMPY[name] == dt:
            return _BY_NAME[name]
    if dt == np.bool_:
        return boolean
    raise UnsupportedTypeError(f"numpy dtype {dt} has no modelc dtype")
