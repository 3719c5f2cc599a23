"""Neural-network ONNX ops: Conv, Gemm, MatMul, normalizations, LRN, Softmax, Dropout."""

from __future__ import annotations

import math

import numpy as np

from modelc.frontend.onnx_ops.common import axis, spatial_attrs
from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter
from modelc.ir import dtypes as D


@converter("Conv", since=1)
def conv(n: OnnxNode) -> list[str]:
    """kernel_shape comes from W (the attribute is optional and must agree); auto_pad becomes
    explicit pads."""
    x_shape, w_shape = n.shape(0), n.shape(1)
    if len(x_shape) < 3 or len(w_shape) != len(x_shape):
        raise n.shape_error(f"X {x_shape} and W {w_shape} are not an N-d convolution's operands")
    kernel = list(w_shape[2:])
    given = n.ints_attr("kernel_shape")
    if given is not None and list(given) != kernel:
        raise n.shape_error(f"kernel_shape {given} disagrees with W's shape {w_shape}")
    strides, pads, dilations = spatial_attrs(n, x_shape[2:], kernel)
    return [
        n.op(
            "conv",
            n.input(0),
            n.input(1),
            n.input(2),
            strides=strides,
            pads=pads,
            dilations=dilations,
            group=n.attr("group", 1),
        )
    ]


@converter("Gemm", since=7)
def gemm(n: OnnxNode) -> list[str]:
    """alpha * A' @ B' + beta * C. Transposes of constants fold at import; alpha is folded into
    a constant B, beta into a constant C, so a typical fully connected layer is matmul + add."""
    a, b, c = n.input(0), n.input(1), n.input(2)
    if n.attr("transA", 0):
        a = n.transpose(a, (1, 0))
    if n.attr("transB", 0):
        b = n.transpose(b, (1, 0))
    alpha, beta = n.attr("alpha", 1.0), n.attr("beta", 1.0)
    if alpha != 1.0 and n.b.is_constant(b):
        b = n.op("mul", b, n.scalar(alpha, like=b))
        alpha = 1.0
    y = n.op("matmul", a, b)
    if alpha != 1.0:
        y = n.op("mul", y, n.scalar(alpha, like=y))
    if c and beta != 0.0:
        if beta != 1.0:
            c = n.op("mul", c, n.scalar(beta, like=c))
        y = n.op("add", y, c)
    return [y]


@converter("MatMul", since=1)
def matmul(n: OnnxNode) -> list[str]:
    return [n.op("matmul", n.input(0), n.input(1))]


# ---- normalization ---------------------------------------------------------------------------


def _batch_norm(n: OnnxNode) -> list[str]:
    for k in range(1, n.num_outputs):
        if n.wants_output(k):
            raise n.unsupported(
                f"output {k} (a training statistic) is not supported: modelc compiles inference "
                "graphs; export the model in eval mode"
            )
    ins = [n.input(k) for k in range(5)]
    return [n.op("batch_norm", *ins, epsilon=n.attr("epsilon", 1e-5))]


@converter("BatchNormalization", since=9)
def batch_norm_9(n: OnnxNode) -> list[str]:
    """Inference form. BN-9 dropped `spatial`, but models converted from older opsets still
    carry it; spatial=1 is the usual per-channel normalization."""
    if n.attr("spatial", 1) != 1:
        raise n.unsupported("spatial=0 (per-activation statistics) is not supported")
    return _batch_norm(n)


@converter("BatchNormalization", since=14)
def batch_norm_14(n: OnnxNode) -> list[str]:
    if n.attr("training_mode", 0):
        raise n.unsupported(
            "training_mode=1 normalizes with batch statistics; modelc compiles inference "
            "graphs: export the model in eval mode"
        )
    return _batch_norm(n)


def _normalize(n: OnnxNode, x: str, axes: list[int], eps: float) -> tuple[str, str, str]:
    """(x - mean) / sqrt(var + eps) over `axes`; returns (normalized, mean, 1 / std)."""
    mean = n.op("reduce_mean", x, axes=axes, keepdims=True)
    centered = n.op("sub", x, mean)
    var = n.op("reduce_mean", n.op("mul", centered, centered), axes=axes, keepdims=True)
    inv_std = n.op("reciprocal", n.op("sqrt", n.op("add", var, n.scalar(eps, like=var))))
    return n.op("mul", centered, inv_std), mean, inv_std


@converter("LayerNormalization", since=17)
def layer_norm(n: OnnxNode) -> list[str]:
    """Normalize over axes [axis, rank); stash_type=1 computes in float32 for 16-bit inputs."""
    x = n.input(0)
    rank = n.rank(0)
    first = axis(n, n.attr("axis", -1), rank)
    dtype = n.dtype(0)
    if n.attr("stash_type", 1) == 1 and dtype in (D.f16, D.bf16):
        x = n.cast(x, D.f32)
    y, mean, inv_std = _normalize(n, x, list(range(first, rank)), n.attr("epsilon", 1e-5))
    y = n.op("mul", n.cast(y, dtype), n.input(1))
    if n.has_input(2):
        y = n.op("add", y, n.input(2))
    return [y, mean, inv_std]


@converter("InstanceNormalization", since=6)
def instance_norm(n: OnnxNode) -> list[str]:
    """Normalize each (sample, channel) over the spatial axes; scale and bias are per channel."""
    x = n.input(0)
    rank = n.rank(0)
    per_channel = (n.shape(0)[1],) + (1,) * (rank - 2)
    y, _, _ = _normalize(n, x, list(range(2, rank)), n.attr("epsilon", 1e-5))
    y = n.op("mul", y, n.reshape(n.input(1), per_channel))
    return [n.op("add", y, n.reshape(n.input(2), per_channel))]


@converter("LRN", since=1)
def lrn(n: OnnxNode) -> list[str]:
    size = n.attr("size")
    if size is None:
        raise n.unsupported("the required attribute 'size' is missing")
    return [
        n.op(
            "lrn",
            n.input(0),
            size=size,
            alpha=n.attr("alpha", 1e-4),
            beta=n.attr("beta", 0.75),
            bias=n.attr("bias", 1.0),
        )
    ]


# ---- softmax ---------------------------------------------------------------------------------


def _softmax_2d(n: OnnxNode, ir_op: str) -> list[str]:
    """Softmax-1/11 semantics: flatten to 2-D at `axis` (default 1), normalize each row, reshape
    back. When axis is the last one this is the one-axis softmax, and no reshape is needed."""
    x, shape = n.input(0), n.shape(0)
    rank = len(shape)
    ax = axis(n, n.attr("axis", 1), rank)
    if ax >= rank - 1:
        return [n.op(ir_op, x, axis=max(rank - 1, 0))]
    rows = (math.prod(shape[:ax]), math.prod(shape[ax:]))
    y = n.op(ir_op, n.reshape(x, rows), axis=1)
    return [n.reshape(y, shape)]


def _softmax_axis(n: OnnxNode, ir_op: str) -> list[str]:
    """Softmax-13 semantics: one axis, default -1."""
    return [n.op(ir_op, n.input(0), axis=axis(n, n.attr("axis", -1), n.rank(0)))]


@converter("Softmax", since=1)
def softmax_1(n: OnnxNode) -> list[str]:
    return _softmax_2d(n, "softmax")


@converter("Softmax", since=13)
def softmax_13(n: OnnxNode) -> list[str]:
    return _softmax_axis(n, "softmax")


@converter("LogSoftmax", since=1)
def log_softmax_1(n: OnnxNode) -> list[str]:
    return _softmax_2d(n, "log_softmax")


@converter("LogSoftmax", since=13)
def log_softmax_13(n: OnnxNode) -> list[str]:
    return _softmax_axis(n, "log_softmax")


# ---- dropout ---------------------------------------------------------------------------------


def _dropout(n: OnnxNode, mask_dtype: D.DType) -> list[str]:
    """Inference: the output is the input; a mask someone reads is all ones (nothing dropped)."""
    outs = [n.input(0)]
    if n.wants_output(1):
        outs.append(n.constant(np.ones(n.shape(0), dtype=mask_dtype.numpy), mask_dtype))
    return outs


@converter("Dropout", since=7)
def dropout_7(n: OnnxNode) -> list[str]:
    """Dropout-7: the mask has the input's type."""
    return _dropout(n, n.dtype(0))


@converter("Dropout", since=10)
def dropout_10(n: OnnxNode) -> list[str]:
    """Dropout-10: the mask is bool."""
    return _dropout(n, D.boolean)


@converter("Dropout", since=12)
def dropout_12(n: OnnxNode) -> list[str]:
    """Dropout-12: ratio and training_mode are inputs; training mode would drop at random."""
    if n.has_input(2):
        training = n.maybe_const(2)
        if training is None or bool(np.asarray(training).reshape(-1)[0]):
            raise n.unsupported(
                "training_mode must be a constant false: modelc compiles inference graphs"
            )
    return _dropout(n, D.boolean)
