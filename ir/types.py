"""Tensor types: shape, element type, quantization and storage encoding.

Quantization (`QuantParams`) and weight encodings (`NM`, `BinaryCoded`) live in the type, so that
every pass and renderer sees them without side tables: a quantized conv is a conv whose operand
types carry scales, an N:M-sparse weight is a constant whose type says how it is stored.
Shapes are static tuples of ints: symbolic dims are fixed at import (`--input-shape`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from modelc.ir.dtypes import DType


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization `real = scale * (q - zero_point)`.

    `scale`/`zero_point` are tuples: one entry for per-tensor, one per channel along `axis`
    for per-channel. `bits` may be narrower than the storage dtype (4-bit values in i8).
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None
    bits: int = 8
    symmetric: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        object.__setattr__(self, "zero_point", tuple(int(z) for z in self.zero_point))
        if len(self.scale) != len(self.zero_point):
            raise ValueError("QuantParams: scale and zero_point differ in length")
        if self.axis is None and len(self.scale) != 1:
            raise ValueError("QuantParams: per-tensor quantization takes one scale")

    @property
    def per_channel(self) -> bool:
        return self.axis is not None


@dataclass(frozen=True)
class Dense:
    """Plain row-major storage (the default; printed as nothing)."""


@dataclass(frozen=True)
class NM:
    """N:M structured sparsity: at most `n` non-zeros in every `m` consecutive elements along the
    last axis, stored as values plus in-group indices."""

    n: int
    m: int


@dataclass(frozen=True)
class BinaryCoded:
    """Shift-add (ShiftAddLLM-style) encoding: `bits` binary matrices with group-wise scales over
    groups of `group` elements; `pow2_terms` scales are restricted to powers of two."""

    bits: int
    group: int
    pow2_terms: bool = True


Encoding = Dense | NM | BinaryCoded


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: DType
    quant: QuantParams | None = None
    encoding: Encoding = field(default_factory=Dense)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d < 0 for d in self.shape):
            raise ValueError(f"negative dim in shape {self.shape}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def with_shape(self, shape: tuple[int, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype, self.quant, self.encoding)

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(self.shape, dtype, self.quant, self.encoding)

    def __str__(self) -> str:
        from modelc.ir.printer import format_type

        return format_type(self)
