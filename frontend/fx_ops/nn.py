"""Neural-network ATen ops: convolution, the linear / matmul family, softmax, attention and
embedding (normalizations are in `norm`).

Compositions follow what the ONNX frontend makes of the same op after torch's ONNX exporters, so
that a model compiled either way gives the same IR: scaled-dot-product attention is onnxscript's
(q and k each scaled by sqrt(scale) before the matmul, additive mask, softmax, matmul), linear is
matmul with the transposed (constant-folded) weight plus the bias.
"""

from __future__ import annotations

import math

import numpy as np

from modelc.frontend.fx_ops.node import FxNode
from modelc.frontend.fx_ops.registry import converter
from modelc.ir import dtypes as D
from modelc.ir.opdef import all_ops

# ---- convolution -----------------------------------------------------------------------------


@converter("aten.convolution.default")
def convolution(n: FxNode) -> str:
    """N-d convolution (torch's symmetric padding becomes begins + ends); transposed ones map
    to the IR's conv_transpose."""
    x, w = n.tensor("input"), n.tensor("weight")
    b = n.tensor("bias") if n.arg("bias") is not None else ""
    k = n.rank(w) - 2
    strides, dilations = n.ints("stride", k), n.ints("dilation", k)
    padding = n.ints("padding", k)
    if n.arg("transposed"):
        return _conv_transpose(n, x, w, b, strides, padding, dilations)
    if any(n.ints("output_padding", k)):
        raise n.unsupported("output_padding is only meaningful for transposed convolutions")
    return n.op(
        "conv",
        x,
        w,
        b,
        strides=strides,
        pads=padding + padding,
        dilations=dilations,
        group=int(n.arg("groups", 1)),
    )


def _conv_transpose(
    n: FxNode,
    x: str,
    w: str,
    b: str,
    strides: list[int],
    padding: list[int],
    dilations: list[int],
) -> str:
    """IR conv_transpose in ONNX ConvTranspose's normal form: w [C, M/group, *k], explicit
    begin + end pads, output_padding (added at the end of each spatial dim)."""
    if "conv_transpose" not in all_ops():
        raise n.unsupported(
            "transposed convolution needs the graph-IR op conv_transpose, which this modelc "
            "does not have yet"
        )
    k = len(strides)
    return n.op(
        "conv_transpose",
        x,
        w,
        b,
        strides=strides,
        pads=padding + padding,
        dilations=dilations,
        group=int(n.arg("groups", 1)),
        output_padding=n.ints("output_padding", k),
    )


# ---- linear algebra --------------------------------------------------------------------------


@converter("aten.linear.default")
def linear(n: FxNode) -> str:
    """x @ W^T + b; the transpose of a constant weight folds at import."""
    dt = n.out_dtype
    w = n.cast(n.tensor("weight"), dt)
    wt = n.transpose(w, [1, 0]) if n.rank(w) == 2 else w
    y = n.op("matmul", n.cast(n.tensor("input"), dt), wt)
    if n.arg("bias") is not None:
        y = n.op("add", y, n.cast(n.tensor("bias"), dt))
    return y


@converter("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def matmul(n: FxNode) -> str:
    dt = n.out_dtype
    other = "mat2" if n.arg("mat2") is not None else "other"
    return n.op("matmul", n.cast(n.tensor("self"), dt), n.cast(n.tensor(other), dt))


@converter("aten.addmm.default")
def addmm(n: FxNode) -> str:
    """beta * self + alpha * (mat1 @ mat2) (Gemm); alpha folds into a constant mat2."""
    dt = n.out_dtype
    a, b = n.cast(n.tensor("mat1"), dt), n.cast(n.tensor("mat2"), dt)
    alpha, beta = n.arg("alpha", 1), n.arg("beta", 1)
    if alpha != 1 and n.b.is_constant(b):
        b, alpha = n.op("mul", b, n.scalar(alpha, dt)), 1
    y = n.op("matmul", a, b)
    if alpha != 1:
        y = n.op("mul", y, n.scalar(alpha, dt))
    if beta != 0:
        c = n.operand("self", dt)
        if beta != 1:
            c = n.op("mul", c, n.scalar(beta, dt))
        y = n.op("add", y, c)
    return y


# ---- softmax ---------------------------------------------------------------------------------


def _softmax(n: FxNode, ir_op: str) -> str:
    x = n.cast(n.tensor("self"), n.out_dtype)
    return n.op(ir_op, x, axis=n.axis(n.arg("dim"), n.rank(x)))


@converter("aten.softmax.int", "aten._softmax.default")
def softmax(n: FxNode) -> str:
    return _softmax(n, "softmax")


@converter("aten.log_softmax.int", "aten._log_softmax.default")
def log_softmax(n: FxNode) -> str:
    return _softmax(n, "log_softmax")


# ---- attention -------------------------------------------------------------------------------


@converter("aten.scaled_dot_product_attention.default")
def scaled_dot_product_attention(n: FxNode) -> str:
    """softmax((q * sqrt(s)) @ (k^T * sqrt(s)) + mask) @ v, s = scale or 1 / sqrt(E): the
    math formulation, spelled as onnxscript exports it. A boolean mask (True = attend) becomes
    0 / -inf; is_causal is a constant lower-triangular mask."""
    q, k, v = n.tensor("query"), n.tensor("key"), n.tensor("value")
    dt = n.dtype(q)
    if n.arg("dropout_p", 0.0):
        raise n.unsupported("dropout_p must be 0 at inference")
    if n.arg("enable_gqa", False) and n.shape(q)[-3] != n.shape(k)[-3]:
        raise n.unsupported("grouped-query attention (fewer key heads) is not supported")
    scale = n.arg("scale")
    if scale is None:
        scale = 1 / math.sqrt(n.shape(q)[-1])
    root = n.scalar(math.sqrt(scale), dt)
    rank = n.rank(k)
    kt = n.transpose(k, list(range(rank - 2)) + [rank - 1, rank - 2])
    scores = n.op("matmul", n.op("mul", q, root), n.op("mul", kt, root))
    mask = _attention_mask(n, n.shape(q)[-2], n.shape(k)[-2], dt)
    if mask:
        scores = n.op("add", scores, mask)
    weights = n.op("softmax", scores, axis=n.rank(scores) - 1)
    return n.op("matmul", weights, v)


def _attention_mask(n: FxNode, q_len: int, k_len: int, dt: D.DType) -> str:
    """The additive mask ("" for none)."""
    mask = n.tensor("attn_mask") if n.arg("attn_mask") is not None else ""
    if n.arg("is_causal", False):
        if mask:
            raise n.unsupported("attn_mask and is_causal together are not supported")
        causal = np.tril(np.ones((q_len, k_len), dtype=bool))
        return n.constant(np.where(causal, 0, -np.inf).astype(dt.numpy), dt)
    if mask and n.dtype(mask) == D.boolean:
        return n.op("where", mask, n.scalar(0.0, dt), n.scalar(-math.inf, dt))
    return n.cast(mask, dt) if mask else ""


@converter("aten.embedding.default")
def embedding(n: FxNode) -> str:
    """A row gather; padding_idx only matters to training."""
    return n.op("gather", n.tensor("weight"), n.tensor("indices"), axis=0)
