"""Quantization arithmetic, written once and evaluated two ways: on numpy arrays (the op
references) and as loop-IR expressions (the op lowerings).

Bit-exactness between the interpreter and every backend is the numerics contract, so the
formulas must not exist twice. Each formula here is a function of an `Arith` backend: `NUMPY`
evaluates it on int64 / float32 arrays, a `LoopArith` builds the same computation for a kernel.
The formulas themselves (see docs/quantization_numerics.md for where each rule comes from):

- `quantize_formula`: ONNX QuantizeLinear, `saturate(round_half_even(x / scale) + zero_point)`,
  the division in float32; NaN saturates to the low end of the range.
- `dequantize_formula`: ONNX DequantizeLinear, `float32(q - zero_point) * scale`.
- `requantize_formula`: TFLite's `MultiplyByQuantizedMultiplier` (gemmlowp's
  SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT), plus the output zero point and a
  clamp (which also carries a fused ReLU).

Integer formulas work in int64, where every intermediate is exact; results are clamped into the
target range before the caller narrows them, so no C conversion ever overflows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from modelc.ir import loop as L
from modelc.ir.dtypes import DType, f32, i64
from modelc.ir.loop import Expr

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
# Shifts are clamped into [-MAX_SHIFT, MAX_SHIFT]: a right shift by 31 already rounds every
# int32 to -1, 0 or 1 and a left shift by 31 saturates every non-zero int32, so wider shifts
# add nothing and would overflow int64 intermediates.
MAX_SHIFT = 31

Val = Any  # np.ndarray (NUMPY) or Expr (LOOP)


class Arith(Protocol):
    """The primitives the formulas are written in. Integer values are int64, floats float32;
    Python ints / floats are constants of those types."""

    def add(self, a: Val, b: Val) -> Val: ...
    def sub(self, a: Val, b: Val) -> Val: ...
    def mul(self, a: Val, b: Val) -> Val: ...
    def fdiv(self, a: Val, b: Val) -> Val: ...
    def trunc_div_pow2(self, a: Val, bits: int) -> Val: ...
    def shl1(self, bits: Val) -> Val: ...
    def shr(self, a: Val, bits: Val) -> Val: ...
    def band(self, a: Val, b: Val) -> Val: ...
    def lt(self, a: Val, b: Val) -> Val: ...
    def gt(self, a: Val, b: Val) -> Val: ...
    def eq(self, a: Val, b: Val) -> Val: ...
    def both(self, a: Val, b: Val) -> Val: ...
    def where(self, c: Val, a: Val, b: Val) -> Val: ...
    def rint(self, a: Val) -> Val: ...
    def to_int(self, a: Val) -> Val: ...
    def to_float(self, a: Val) -> Val: ...
    def let(self, a: Val) -> Val: ...


class _Numpy:
    """Arrays in, arrays out. Integer inputs are expected as int64, floats as float32."""

    def add(self, a: Val, b: Val) -> Val:
        return np.add(a, b)

    def sub(self, a: Val, b: Val) -> Val:
        return np.subtract(a, b)

    def mul(self, a: Val, b: Val) -> Val:
        return np.multiply(a, b)

    def fdiv(self, a: Val, b: Val) -> Val:
        return np.divide(a, np.float32(b) if isinstance(b, float) else b, dtype=np.float32)

    def trunc_div_pow2(self, a: Val, bits: int) -> Val:
        # C's integer division truncates toward zero; numpy's >> floors.
        return np.where(a >= 0, a >> bits, -((-a) >> bits))

    def shl1(self, bits: Val) -> Val:
        return np.left_shift(np.int64(1), bits)

    def shr(self, a: Val, bits: Val) -> Val:
        return np.right_shift(a, bits)  # arithmetic on signed ints, as gcc's >> is

    def band(self, a: Val, b: Val) -> Val:
        return np.bitwise_and(a, b)

    def lt(self, a: Val, b: Val) -> Val:
        return np.less(a, b)

    def gt(self, a: Val, b: Val) -> Val:
        return np.greater(a, b)

    def eq(self, a: Val, b: Val) -> Val:
        return np.equal(a, b)

    def both(self, a: Val, b: Val) -> Val:
        return np.logical_and(a, b)

    def where(self, c: Val, a: Val, b: Val) -> Val:
        out = np.where(c, a, b)
        return out.astype(np.float32) if out.dtype.kind == "f" else out.astype(np.int64)

    def rint(self, a: Val) -> Val:
        return np.rint(a)  # half to even, like C's nearbyintf in the default rounding mode

    def to_int(self, a: Val) -> Val:
        return np.asarray(a).astype(np.int64)

    def to_float(self, a: Val) -> Val:
        return np.asarray(a).astype(np.float32)

    def let(self, a: Val) -> Val:
        return a


class LoopArith:
    """Loop-IR expressions; Python numbers become int64 / float32 constants.

    `let` names a value that the formula reads more than once: C has no common subexpressions
    in its source, so without it every reuse would copy the whole expression (the clamps and
    selects of the requantize formula grow exponentially). One instance builds one element's
    computation; `wrap(stmt)` puts the bindings around the statement that stores it.
    """

    def __init__(self, prefix: str = "t") -> None:
        self.prefix = prefix
        self.lets: list[tuple[L.Var, Expr]] = []

    def let(self, a: Val) -> Val:
        e = self._e(a)
        if isinstance(e, (L.Const, L.Var)):
            return e
        v = L.Var(f"{self.prefix}{len(self.lets)}", e.dtype)
        self.lets.append((v, e))
        return v

    def wrap(self, stmt: L.Stmt) -> L.Stmt:
        for v, e in reversed(self.lets):
            stmt = L.Let(v, e, stmt)
        return stmt

    @staticmethod
    def _e(v: Val, like: Val | None = None) -> Expr:
        if isinstance(v, Expr):
            return v
        if isinstance(v, float) or (isinstance(like, Expr) and like.dtype.is_float):
            return L.Const(float(v), f32)
        return L.Const(int(v), i64)

    def _bin(self, op: str, a: Val, b: Val) -> Expr:
        return L.BinOp(op, self._e(a, b), self._e(b, a))

    def add(self, a: Val, b: Val) -> Val:
        return L.add(self._e(a, b), self._e(b, a))

    def sub(self, a: Val, b: Val) -> Val:
        return L.sub(self._e(a, b), self._e(b, a))

    def mul(self, a: Val, b: Val) -> Val:
        return L.mul(self._e(a, b), self._e(b, a))

    def fdiv(self, a: Val, b: Val) -> Val:
        return self._bin("/", a, b)

    def trunc_div_pow2(self, a: Val, bits: int) -> Val:
        return self._bin("/", a, L.Const(1 << bits, i64))  # C division truncates toward zero

    def shl1(self, bits: Val) -> Val:
        return self._bin("<<", L.Const(1, i64), bits)

    def shr(self, a: Val, bits: Val) -> Val:
        return self._bin(">>", a, bits)

    def band(self, a: Val, b: Val) -> Val:
        return self._bin("&", a, b)

    def lt(self, a: Val, b: Val) -> Val:
        return self._bin("<", a, b)

    def gt(self, a: Val, b: Val) -> Val:
        return self._bin(">", a, b)

    def eq(self, a: Val, b: Val) -> Val:
        return self._bin("==", a, b)

    def both(self, a: Val, b: Val) -> Val:
        return L.land(a, b)

    def where(self, c: Val, a: Val, b: Val) -> Val:
        return L.select(c, self._e(a, b), self._e(b, a))

    def rint(self, a: Val) -> Val:
        return L.call("round", a)  # nearbyintf: half to even

    def to_int(self, a: Val) -> Val:
        return L.cast(i64, a)

    def to_float(self, a: Val) -> Val:
        return L.cast(f32, a)


NUMPY: Arith = _Numpy()


def _clamp(A: Arith, x: Val, lo: Val, hi: Val) -> Val:
    """min(max(x, lo), hi), written with `where` so a NaN goes to `lo` in numpy and C alike."""
    x = A.let(x)
    x = A.let(A.where(A.gt(x, lo), x, lo))
    return A.where(A.lt(x, hi), x, hi)


# ---- float <-> int -------------------------------------------------------------------------------


def quantize_formula(A: Arith, x: Val, scale: Val, zero_point: Val, qmin: int, qmax: int) -> Val:
    """`saturate(round_half_even(x / scale) + zero_point)`; x and scale float32, the result an
    int64 in [qmin, qmax]. Clamping before rounding is the same as after (the bounds are
    integers and rounding is monotonic), and keeps the float -> int conversion in range."""
    zero_point = A.let(zero_point)
    lo = A.to_float(A.sub(qmin, zero_point))
    hi = A.to_float(A.sub(qmax, zero_point))
    q = A.rint(_clamp(A, A.fdiv(x, scale), lo, hi))
    return A.add(A.to_int(q), zero_point)


def dequantize_formula(A: Arith, q: Val, scale: Val, zero_point: Val) -> Val:
    """`float32(q - zero_point) * scale` (q int64, scale float32): one rounding, like ORT."""
    return A.mul(A.to_float(A.sub(q, zero_point)), scale)


# ---- fixed-point requantization ------------------------------------------------------------------


def srdhm(A: Arith, a: Val, b: Val) -> Val:
    """gemmlowp's SaturatingRoundingDoublingHighMul: round(a * b / 2^31) for int32 a, b, with
    the tie nudged away from zero, and INT32_MIN * INT32_MIN saturating to INT32_MAX."""
    a, b = A.let(a), A.let(b)
    ab = A.let(A.mul(a, b))  # |a * b| <= 2^62: exact in int64
    nudge = A.where(A.lt(ab, 0), 1 - (1 << 30), 1 << 30)
    high = A.trunc_div_pow2(A.add(ab, nudge), 31)
    overflow = A.both(A.eq(a, b), A.eq(a, INT32_MIN))
    return A.where(overflow, INT32_MAX, high)


def rdbpot(A: Arith, x: Val, exponent: Val) -> Val:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero
    (0 <= exponent <= 31)."""
    x, exponent = A.let(x), A.let(exponent)
    mask = A.let(A.sub(A.shl1(exponent), 1))
    remainder = A.band(x, mask)
    threshold = A.add(A.shr(mask, 1), A.where(A.lt(x, 0), 1, 0))
    return A.add(A.shr(x, exponent), A.where(A.gt(remainder, threshold), 1, 0))


ROUNDINGS = ("double", "single")


def requantize_formula(
    A: Arith,
    acc: Val,
    multiplier: Val,
    shift: Val,
    zero_point: int,
    lo: int,
    hi: int,
    rounding: str = "single",
    input_zero_point: int = 0,
) -> Val:
    """clamp(MultiplyByQuantizedMultiplier(acc - input_zero_point, multiplier, shift)
    + zero_point, lo, hi); `acc - input_zero_point` saturates to int32 (it can only leave that
    range for an int32 input with a non-zero input zero point).

    `shift` > 0 scales up, < 0 down (TFLite's convention); shifts are clamped to [-31, 31]
    (see MAX_SHIFT). `rounding` picks TFLite's two definitions:

    - "double" (gemmlowp, TFLite's reference kernels, CMSIS-NN's default): the left shift
      (saturating to int32 where TFLite's `x * (1 << left)` would overflow), SRDHM, then
      RoundingDivideByPOT. Rounds twice, so acc * M within 2^(shift-1) of a half may land on
      the other side of it.
    - "single" (TFLITE_SINGLE_ROUNDING, CMSIS_NN_USE_SINGLE_ROUNDING): one int64 product,
      rounded once, half up: `(acc * multiplier + 2^(30 - shift)) >> (31 - shift)`.
    """
    if input_zero_point:
        acc = _clamp(A, A.sub(acc, input_zero_point), INT32_MIN, INT32_MAX)
    if rounding == "single":
        total = A.let(A.sub(31, _clamp(A, shift, -MAX_SHIFT, MAX_SHIFT - 1)))  # in [1, 62]
        y = A.shr(A.add(A.mul(acc, multiplier), A.shl1(A.sub(total, 1))), total)
        y = _clamp(A, y, INT32_MIN, INT32_MAX)
    elif rounding == "double":
        shift = A.let(_clamp(A, shift, -MAX_SHIFT, MAX_SHIFT))
        left = A.where(A.gt(shift, 0), shift, 0)
        right = A.where(A.lt(shift, 0), A.sub(0, shift), 0)
        x = _clamp(A, A.mul(acc, A.shl1(left)), INT32_MIN, INT32_MAX)
        y = rdbpot(A, srdhm(A, x, multiplier), right)
    else:
        raise ValueError(f"unknown rounding {rounding!r}; use one of {ROUNDINGS}")
    return _clamp(A, A.add(y, zero_point), lo, hi)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: `real ~= multiplier * 2^(shift - 31)` with the multiplier in
    [2^30, 2^31) (a Q0.31 fraction in [0.5, 1)); (0, 0) for zero or a vanishing multiplier.

    The mantissa is rounded half away from zero (std::round); rounding up to exactly 2^31 moves
    one bit into the shift.
    """
    real = float(real)
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"requantization multiplier must be finite and >= 0, got {real}")
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)  # real = mantissa * 2^shift, mantissa in [0.5, 1)
    q = math.floor(mantissa * (1 << 31) + 0.5)  # exact: scaling by 2^31 loses nothing
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -MAX_SHIFT:
        return 0, 0
    if shift > MAX_SHIFT:
        raise ValueError(f"requantization multiplier {real} is too large (>= 2^31)")
    return q, shift


def quantize_multipliers(reals: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """`quantize_multiplier` of each entry, as int32 (multiplier, shift) arrays."""
    pairs = [quantize_multiplier(r) for r in reals]
    mult = np.array([m for m, _ in pairs], dtype=np.int32)
    shift = np.array([s for _, s in pairs], dtype=np.int32)
    return mult, shift


def requantize_constants(
    reals: Sequence[float], rank: int, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (multiplier, shift) operands of a `requantize` whose accumulator (of `rank`) has
    real multipliers `reals` along `axis`: shaped to broadcast along it, or 0-d when all agree.
    Frontends and passes share this, so the same quantized layer always becomes the same IR."""
    mult, shift = quantize_multipliers(reals)
    if len(set(float(r) for r in reals)) <= 1:
        return mult[:1].reshape(()), shift[:1].reshape(())
    shape = tuple(-1 if d == axis else 1 for d in range(rank))
    return mult.reshape(shape), shift.reshape(shape)


# ---- per-channel constants in kernels ------------------------------------------------------------


def channel_table(values: Sequence[int | float], index: Expr, dtype: DType) -> Expr:
    """`values[index]` as an expression: a constant when all entries agree, else a balanced tree
    of selects (log2(len) compares, hoisted out of inner loops by the C compiler).

    The loop IR has no constant tables, so per-channel attributes that a kernel must index (scales
    of a per-axis quantize, per-channel weight zero points) are spelled out this way. Those are
    the rare paths; the hot per-channel data (requantize multipliers) are operands instead.
    """
    consts = [L.Const(float(v) if dtype.is_float else int(v), dtype) for v in values]
    if len(set(values)) == 1:
        return consts[0]

    def build(lo: int, hi: int) -> Expr:
        if len(set(values[lo:hi])) == 1:
            return consts[lo]
        mid = (lo + hi) // 2
        return L.select(L.lt(index, mid), build(lo, mid), build(mid, hi))

    return build(0, len(values))


def compact(zero_points: Sequence[int]) -> list[int]:
    """Per-channel zero points that all agree, written once (the ops take either form)."""
    zps = [int(z) for z in zero_points]
    return zps[:1] if len(set(zps)) == 1 else zps


def int_range(dt: DType) -> tuple[int, int]:
    """The representable range of an integer dtype (4-bit types included)."""
    return int(dt.min), int(dt.max)
