"""Bias correction (`quantize{bias_correction=true}`): undo the mean shift that rounding the
weights puts on each output channel.

Nagel, van Baalen, Blankevoort, Welling, "Data-Free Quantization Through Weight Equalization and
Bias Correction", ICCV 2019 (section 4.2; here with the empirical, calibration-data variant);
Banner et al., "Post-training 4-bit quantization..." (NeurIPS 2019) correct the same bias.

With y = W x + b and quantized weights Wq, the output's expected error is

    E[y - yq] = (W - Wq) E[x]          (per output channel)

so b + (W - Wq) E[x] as the bias gives the quantized layer the float layer's mean output. E[x]
is the mean of the layer's input patches over the calibration set: for a matmul the mean input
row; for a conv the mean im2col patch over every sample and output position, *padding included*
(a border position reads zeros, so the mean patch is not the per-channel mean broadcast over the
taps; this is exact for the layer's mean output over the positions it computes, not an
approximation). The correction is for the weights' rounding only; activation quantization
error is not modelled. A layer without a bias gets one (a conv a third input, a matmul an
`add` of a constant, which fold-qdq folds into qmatmul as for imported models).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from modelc.ir.graph import Graph, Value
from modelc.passes.quant_edit import GraphEdit
from modelc.passes.quant_layers import Layer, LayerInputs, weight_rows


def bias_shift(node_w: np.ndarray, wq: np.ndarray, layer: Layer, inputs: LayerInputs) -> np.ndarray:
    """(W - Wq) E[x] per output channel (float64): what to add to the bias."""
    rows = weight_rows(layer.node, np.asarray(node_w, np.float64) - np.asarray(wq, np.float64))
    return np.concatenate([r @ inputs.mean(g) for g, r in enumerate(rows)])


def add_zero_biases(graph: Graph, layers: Sequence[Layer]) -> Graph:
    """`graph` with a zero bias on every layer that has none, so that correction has a bias to
    correct (numerically the same graph). A matmul's output name moves to the new `add`, so
    the layer's output keeps its name (graph outputs and tools refer to it)."""
    edit = GraphEdit(graph)
    for lay in layers:
        if lay.bias is not None:
            continue
        n = lay.node
        w = edit.data(lay.w)
        channels = w.shape[lay.axis]
        bias = edit.const(f"{lay.w}.bias", np.zeros(channels, np.float32))
        if n.op == "conv":
            edit.set_inputs(n, [n.inputs[0], n.inputs[1], bias])
            continue
        out = n.output
        inner = edit.fresh(f"{out.name}.matmul")
        edit.types[inner] = out.type
        mm = edit.replace(n, dataclasses.replace(n, outputs=(Value(inner, out.type),)))
        loc = f"{n.loc}.bias" if n.loc else ""
        edit.insert_after(mm, edit.node("add", [inner, bias], {}, out.name, loc))
    return edit.build()
