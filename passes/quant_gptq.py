"""GPTQ: Hessian-aware rounding of a layer's weights (`quantize{rounding=gptq}`).

Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", ICLR 2023 (arXiv:2210.17323), after Optimal Brain Quantization
(Frantar & Alistarh, 2022).

Rounding each weight to its nearest level minimizes the error of the weights, not of the layer's
output. GPTQ minimizes ||W X - Q X||^2 over the calibration inputs X, one row of W at a time
(rows are independent: they share the Hessian H = 2 X X^T of that error). It quantizes the
columns in order and, after each, moves the rounding error onto the columns not yet quantized
in the direction that H says compensates it best:

    Hinv = upper Cholesky factor U of H^-1         (H dampened by 1% of its mean diagonal)
    for column i:   q = quant(w_i);   e = (w_i - q) / U[i, i];   w_j -= e * U[i, j]  (j > i)

The Cholesky form is the paper's numerically stable reformulation of OBQ's sequential inverse
updates. Columns go in blocks of `block` with the trailing columns updated once per block (the
paper's lazy batch updates: the same result, BLAS-sized updates). Columns the inputs never
excite (zero diagonal of H) are set to 0 and quantize exactly. Scales are given (here the
per-channel or per-tensor `weight_scales` of the unrounded weights) and stay fixed: GPTQ only
chooses the integers, so the result is on the same grid as round-to-nearest.

The paper's "act order" (columns sorted by decreasing diagonal of H) is not used: quantization
order does not change the grid, and in-order keeps the result reproducible from the weights.
"""

from __future__ import annotations

import numpy as np

DAMP = 0.01  # dampening: this fraction of the mean diagonal of H is added to the diagonal
BLOCK = 128  # columns per lazy batch update


def gptq_rows(
    w: np.ndarray,
    hessian: np.ndarray,
    scales: np.ndarray,
    bits: int,
    damp: float = DAMP,
    block: int = BLOCK,
) -> np.ndarray:
    """Integer levels for the rows of `w` (rows x columns), one scale per row, minimizing
    ||(w - q * s) X||^2 for inputs with `hessian` (columns x columns, = 2 X X^T up to a
    constant). Levels are int64 in the symmetric [-(2^(bits-1) - 1), 2^(bits-1) - 1], the
    levels round-to-nearest reaches with symmetric scales (error feedback could push a weight
    to -2^(bits-1); it is clipped like any other)."""
    w = np.array(w, np.float64)
    h = np.array(hessian, np.float64)
    s = np.asarray(scales, np.float64).reshape(-1, 1)
    qmax = 2 ** (bits - 1) - 1
    qmin = -qmax
    cols = w.shape[1]
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices(cols)] += damp * float(np.mean(np.diag(h)))
    u = _inverse_cholesky_upper(h)
    q = np.zeros(w.shape, np.int64)
    for b0 in range(0, cols, block):
        b1 = min(b0 + block, cols)
        err = np.zeros((w.shape[0], b1 - b0))
        for i in range(b0, b1):
            col = w[:, i]
            qi = np.clip(np.rint(col / s[:, 0]), qmin, qmax)
            q[:, i] = qi.astype(np.int64)
            e = (col - qi * s[:, 0]) / u[i, i]
            w[:, i + 1 : b1] -= np.outer(e, u[i, i + 1 : b1])
            err[:, i - b0] = e
        w[:, b1:] -= err @ u[b0:b1, b1:]
    return q


def _inverse_cholesky_upper(h: np.ndarray) -> np.ndarray:
    """U upper triangular with U^T U = H^-1 (the paper's `cholesky(cholesky_inverse(
    cholesky(H)), upper=True)`) from one Cholesky factorization: with R the index reversal
    and R H R = M M^T, U = R M^-1 R (upper, positive diagonal, and U^T U = R M^-T M^-1 R =
    (R M M^T R)^-1 = H^-1; the Cholesky factor is unique, so it is the paper's)."""
    r = np.arange(len(h))[::-1]
    m = np.linalg.cholesky(h[np.ix_(r, r)])
    return np.linalg.inv(m)[np.ix_(r, r)]


def output_error(w: np.ndarray, wq: np.ndarray, hessian: np.ndarray) -> float:
    """sum over rows of (w - wq) H (w - wq)^T: ||W X - Wq X||^2 up to H's constant."""
    d = np.asarray(w, np.float64) - np.asarray(wq, np.float64)
    return float(np.einsum("ri,ij,rj->", d, hessian, d))
