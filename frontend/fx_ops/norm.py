"""Normalization ATen ops: inference batch norm, layer norm, group norm, instance norm.

Batch norm with running statistics is the IR's `batch_norm`. The others normalize with
statistics of the input itself and are spelled as the ONNX frontend spells LayerNormalization
and InstanceNormalization (reduce_mean, sub, mul, reduce_mean, add eps, sqrt, reciprocal, mul),
so that the graphs match whichever frontend imported the model, and `fuse-patterns` finds the
same subgraph in both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.frontend.fx_ops.node import FxNode
from modelc.frontend.fx_ops.registry import converter
from modelc.ir import dtypes as D


def normalize(n: FxNode, x: str, axes: Sequence[int], eps: float) -> tuple[str, str, str]:
    """(x - mean) / sqrt(var + eps) over `axes`; returns (normalized, mean, 1 / std), the
    statistics with kept dims. The ONNX frontend's `_normalize`, op for op."""
    axes = list(axes)
    mean = n.op("reduce_mean", x, axes=axes, keepdims=True)
    centered = n.op("sub", x, mean)
    var = n.op("reduce_mean", n.op("mul", centered, centered), axes=axes, keepdims=True)
    inv_std = n.op("reciprocal", n.op("sqrt", n.op("add", var, n.scalar(eps, n.dtype(var)))))
    return n.op("mul", centered, inv_std), mean, inv_std


def _affine(n: FxNode, y: str, shape: Sequence[int]) -> str:
    """y * weight + bias, each reshaped to `shape` (when the node has them)."""
    if n.arg("weight") is not None:
        y = n.op("mul", y, n.reshape(n.cast(n.tensor("weight"), n.dtype(y)), shape))
    if n.arg("bias") is not None:
        y = n.op("add", y, n.reshape(n.cast(n.tensor("bias"), n.dtype(y)), shape))
    return y


@converter("aten._native_batch_norm_legit_no_training.default")
def batch_norm(n: FxNode) -> list[str]:
    """Inference batch norm; the saved-statistics outputs (empty in inference) are not made."""
    x = n.tensor("input")
    dt = n.dtype(x)
    channels = n.shape(x)[1]
    ins = []
    for name, fill in (("weight", 1.0), ("bias", 0.0)):
        if n.arg(name) is None:
            ins.append(n.constant(np.full(channels, fill, dtype=dt.numpy), dt))
        else:
            ins.append(n.cast(n.tensor(name), dt))
    ins += [n.cast(n.tensor("running_mean"), dt), n.cast(n.tensor("running_var"), dt)]
    return [n.op("batch_norm", x, *ins, epsilon=float(n.arg("eps", 1e-5)))]


def _layer_norm(n: FxNode) -> tuple[str, str, str]:
    """LayerNormalization over the trailing dims, computing in float32 for 16-bit inputs (ONNX's
    stash_type=1); returns (y, mean, 1 / std) with keepdims statistics."""
    x = n.tensor("input")
    dtype = n.dtype(x)
    rank = n.rank(x)
    axes = range(rank - len(n.ints("normalized_shape")), rank)
    if dtype in (D.f16, D.bf16):
        x = n.cast(x, D.f32)
    y, mean, inv_std = normalize(n, x, axes, float(n.arg("eps", 1e-5)))
    y = n.cast(y, dtype)
    if n.arg("weight") is not None:
        y = n.op("mul", y, n.tensor("weight"))
    if n.arg("bias") is not None:
        y = n.op("add", y, n.tensor("bias"))
    return y, mean, inv_std


@converter("aten.layer_norm.default")
def layer_norm(n: FxNode) -> str:
    return _layer_norm(n)[0]


@converter("aten.native_layer_norm.default")
def native_layer_norm(n: FxNode) -> list[str]:
    return list(_layer_norm(n))


@converter("aten.native_group_norm.default")
def group_norm(n: FxNode) -> list[str]:
    """Normalize each group of C / G channels (with all spatial positions) of each sample:
    reshape to [N, G, rest], normalize over the last axis, reshape back, per-channel affine.
    The statistics outputs are not made."""
    x = n.tensor("input")
    shape = n.shape(x)
    groups = int(n.arg("group"))
    grouped = n.reshape(x, (shape[0], groups, math.prod(shape[1:]) // groups))
    y, _, _ = normalize(n, grouped, [2], float(n.arg("eps", 1e-5)))
    y = n.reshape(y, shape)
    return [_affine(n, y, (shape[1],) + (1,) * (len(shape) - 2))]


@converter("aten._native_batch_norm_legit.no_stats")
def batch_norm_batch_stats(n: FxNode) -> list[str]:
    """Batch norm with the batch's own statistics: what instance norm becomes (torch folds the
    batch into the channels first). The statistics outputs are not made."""
    x = n.tensor("input")
    shape = n.shape(x)
    y, _, _ = normalize(n, x, [0, *range(2, len(shape))], float(n.arg("eps", 1e-5)))
    return [_affine(n, y, (shape[1],) + (1,) * (len(shape) - 2))]
