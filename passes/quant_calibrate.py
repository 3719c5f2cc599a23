"""Calibration arithmetic of the `quantize` pass: ranges from observed values, and
quantization parameters from ranges.

Kept apart from the pass so each formula can be tested against a numpy transcription on its
own (tests/passes/test_quantize.py), and so the pass file stays about graph rewriting.

Ranges (lo, hi) always contain 0: a zero-point must represent 0.0 exactly (zero padding, ReLU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METHODS = ("minmax", "moving_average", "percentile", "kl", "mse")
# symmetric_uint8 is Glow's "SymmetricWithUnsigned": symmetric, except that a tensor whose
# calibrated range is non-negative uses every level (in signed storage: zero point -128)
SCHEMES = ("symmetric", "asymmetric", "symmetric_uint8")
HIST_BINS = 2048  # TensorRT's entropy calibrator histogram size
KL_VALUES_PER_BIN = 16  # at least this many values per histogram bin on average
MSE_RATIOS = 100  # clip ratios 0.01 .. 1.00 tried by the MSE search


def minmax_range(batches: Sequence[np.ndarray]) -> tuple[float, float]:
    """Global min / max over every batch."""
    lo = min(float(b.min()) for b in batches)
    hi = max(float(b.max()) for b in batches)
    return lo, hi


def moving_average_range(batches: Sequence[np.ndarray], c: float) -> tuple[float, float]:
    """Exponential moving average of per-batch min / max (PyTorch's
    MovingAverageMinMaxObserver: the first batch initialises, then `x += c * (new - x)`)."""
    lo, hi = float(batches[0].min()), float(batches[0].max())
    for b in batches[1:]:
        lo += c * (float(b.min()) - lo)
        hi += c * (float(b.max()) - hi)
    return lo, hi


def percentile_range(values: np.ndarray, pct: float, symmetric: bool) -> tuple[float, float]:
    """Clip the tails: symmetric clips |x| at its `pct` percentile (the range is (0, t) when no
    value is negative, so an unsigned-aware scheme still sees a non-negative tensor), asymmetric
    clips each side (lo at 100 - pct, hi at pct); numpy's linear interpolation."""
    if symmetric:
        t = float(np.percentile(np.abs(values), pct))
        return (-t if float(values.min()) < 0 else 0.0), t
    return float(np.percentile(values, 100.0 - pct)), float(np.percentile(values, pct))


def kl_threshold(hist: np.ndarray, bin_width: float, levels: int) -> float:
    """TensorRT's entropy calibration on a histogram of |x| (bins from 0): for each candidate
    threshold bin i >= levels, P = hist[:i] with the clipped tail added to its last bin, Q = P's
    bins merged into `levels` groups and spread back evenly over the nonzero bins; pick the i of
    the least KL(P || Q). Returns the threshold (i bins' width)."""
    hist = np.asarray(hist, np.float64)
    n = len(hist)
    if n <= levels:
        return n * bin_width
    # Vectorized over the levels (np.add.reduceat per candidate): the per-level Python loop
    # made KL 1-4 s per tensor, so KL trials dominated a tuning run (20-60 s against 3-5 s).
    nonzero_all = hist != 0
    tails = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tails[i] = hist[i:].sum()
    best_i, best_kl = n, math.inf
    for i in range(levels, n + 1):
        p = hist[:i].copy()
        p[i - 1] += tails[i]
        nonzero = nonzero_all[:i]
        # level j covers bins [int(edges[j]), int(edges[j + 1])), the last one up to i
        starts = np.linspace(0, i, levels + 1)[:-1].astype(np.int64)
        sums = np.add.reduceat(hist[:i], starts)
        counts = np.add.reduceat(nonzero.astype(np.int64), starts)
        per_bin = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        q = np.repeat(per_bin, np.diff(np.append(starts, i))) * nonzero
        kl = _kl(p, q)
        if kl < best_kl:
            best_i, best_kl = i, kl
    return best_i * bin_width


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    ps, qs = p.sum(), q.sum()
    if ps == 0 or qs == 0:
        return math.inf
    p, q = p / ps, q / qs
    m = p > 0
    if np.any(q[m] == 0):
        return math.inf
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def kl_range(values: np.ndarray, bits: int, lo: float, hi: float) -> tuple[float, float]:
    """The KL threshold on |x| clips both sides of the observed range."""
    amax = max(abs(lo), abs(hi))
    if amax == 0:
        return lo, hi
    # TensorRT's 2048 bins, fewer for small tensors: a sparse histogram's KL prefers clipping
    # exact zeros (ReLU's dead units) quantize exactly under any threshold; left in, their spike
    # in bin 0 makes every tail look negligible and KL clips far too hard
    values = values[values != 0]
    levels = 2 ** (bits - 1)
    bins = int(min(HIST_BINS, max(levels, values.size // KL_VALUES_PER_BIN)))
    hist, _ = np.histogram(np.abs(values), bins=bins, range=(0.0, amax))
    t = kl_threshold(hist, amax / bins, levels)
    return max(lo, -t), min(hi, t)


def mse_range(
    values: np.ndarray, bits: int, lo: float, hi: float, scheme: str, pow2: bool
) -> tuple[float, float]:
    """The clip ratio r in {0.01, ..., 1} whose range (r lo, r hi) quantizes a histogram of the
    values (bin centres weighted by counts) with the least squared error."""
    if lo == hi:
        return lo, hi
    hist, edges = np.histogram(values, bins=HIST_BINS, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    best, best_err = 1.0, math.inf
    for k in range(1, MSE_RATIOS + 1):
        r = k / MSE_RATIOS
        scale, zp = qparams(r * lo, r * hi, bits, scheme, pow2)
        err = float(np.sum(hist * (centres - fake_quant(centres, scale, zp, bits)) ** 2))
        if err < best_err:
            best, best_err = r, err
    return best * lo, best * hi


def fake_quant(x: np.ndarray, scale: float, zp: int, bits: int) -> np.ndarray:
    """dequantize(quantize(x)) with the `quantize` op's rounding (half to even) and clamp."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = np.clip(np.rint(np.asarray(x, np.float64) / scale) + zp, qmin, qmax)
    return (q - zp) * scale


def qparams(lo: float, hi: float, bits: int, scheme: str, pow2: bool) -> tuple[float, int]:
    """(scale, zero point) of a signed `bits`-wide integer covering [lo, hi] (widened to hold 0).

    symmetric: scale = max(|lo|, |hi|) / (2^(bits-1) - 1), zero point 0;
    asymmetric: scale = (hi - lo) / (2^bits - 1), zero point = round(qmin - lo / scale);
    symmetric_uint8: a range with lo >= 0 gets scale = hi / (2^bits - 1) and zero point qmin
    (unsigned values in signed storage: twice symmetric's resolution for ReLU outputs), any
    other range is symmetric;
    power of two: the scale rounded up to 2^ceil(log2 scale) (so the range still fits).
    Scales are float32 values, as the ops' attributes and onnxruntime keep them."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    unsigned = scheme == "symmetric_uint8" and lo >= 0
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if unsigned:
        scale = hi / (qmax - qmin)
    elif scheme == "asymmetric":
        scale = (hi - lo) / (qmax - qmin)
    else:
        scale = max(-lo, hi) / qmax
    if not scale > 0 or not math.isfinite(scale):
        scale = 1.0
    if pow2:
        scale = 2.0 ** math.ceil(math.log2(scale))
    scale = float(np.float32(scale))
    if unsigned:
        zp = qmin
    elif scheme == "asymmetric":
        zp = int(np.clip(round(qmin - lo / scale), qmin, qmax))
    else:
        zp = 0
    return scale, zp


def weight_scales(
    w: np.ndarray, bits: int, per_channel: bool, axis: int, pow2: bool
) -> list[float]:
    """Symmetric weight scales, one per channel along `axis` or one for the tensor."""
    if per_channel:
        amax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    else:
        amax = np.abs(w).max(keepdims=True).reshape(1)
    return [qparams(-float(a), float(a), bits, "symmetric", pow2)[0] for a in amax]


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio, 10 log10(|ref|^2 / |ref - got|^2), in dB."""
    ref = np.asarray(ref, np.float64)
    noise = float(np.sum((ref - np.asarray(got, np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf
