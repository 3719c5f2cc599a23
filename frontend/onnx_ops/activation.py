"""Activation ONNX ops with attributes, and the ones the IR spells as a short composition.

Attribute defaults are the ONNX ones (they differ from the IR's in places, e.g. Selu's).
"""

from __future__ import annotations

from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter


@converter("LeakyRelu", since=6)
def leaky_relu(n: OnnxNode) -> list[str]:
    return [n.op("leaky_relu", n.input(0), alpha=n.attr("alpha", 0.01))]


@converter("Elu", since=6)
def elu(n: OnnxNode) -> list[str]:
    return [n.op("elu", n.input(0), alpha=n.attr("alpha", 1.0))]


@converter("HardSigmoid", since=6)
def hard_sigmoid(n: OnnxNode) -> list[str]:
    return [n.op("hard_sigmoid", n.input(0), alpha=n.attr("alpha", 0.2), beta=n.attr("beta", 0.5))]


@converter("Gelu", since=20)
def gelu(n: OnnxNode) -> list[str]:
    approximate = n.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise n.unsupported(f"approximate={approximate!r} is not 'none' or 'tanh'")
    return [n.op("gelu", n.input(0), approximate=approximate)]


@converter("Selu", since=6)
def selu(n: OnnxNode) -> list[str]:
    """gamma * elu(x, alpha)."""
    x = n.input(0)
    alpha = n.attr("alpha", 1.67326319217681884765625)
    gamma = n.attr("gamma", 1.05070102214813232421875)
    return [n.op("mul", n.op("elu", x, alpha=alpha), n.scalar(gamma, like=x))]


@converter("Celu", since=12)
def celu(n: OnnxNode) -> list[str]:
    """alpha * elu(x / alpha, 1)."""
    x = n.input(0)
    alpha = n.attr("alpha", 1.0)
    if alpha == 1.0:
        return [n.op("elu", x, alpha=1.0)]
    scaled = n.op("div", x, n.scalar(alpha, like=x))
    return [n.op("mul", n.op("elu", scaled, alpha=1.0), n.scalar(alpha, like=x))]


@converter("PRelu", since=7)
def prelu(n: OnnxNode) -> list[str]:
    """where(x < 0, x * slope, x); the slope broadcasts to x (unidirectionally, which numpy
    broadcasting covers)."""
    x, slope = n.input(0), n.input(1)
    negative = n.op("less", x, n.scalar(0, like=x))
    return [n.op("where", negative, n.op("mul", x, slope), x)]


@converter("ThresholdedRelu", since=10)
def thresholded_relu(n: OnnxNode) -> list[str]:
    """where(x > alpha, x, 0)."""
    x = n.input(0)
    above = n.op("greater", x, n.scalar(n.attr("alpha", 1.0), like=x))
    return [n.op("where", above, x, n.scalar(0, like=x))]


@converter("Softsign", since=1)
def softsign(n: OnnxNode) -> list[str]:
    """x / (1 + |x|)."""
    x = n.input(0)
    return [n.op("div", x, n.op("add", n.op("abs", x), n.scalar(1, like=x)))]


@converter("Mish", since=18)
def mish(n: OnnxNode) -> list[str]:
    """x * tanh(softplus(x))."""
    x = n.input(0)
    return [n.op("mul", x, n.op("tanh", n.op("softplus", x)))]
