"""SmoothQuant: move activation outliers into the weights before quantizing
(`quantize{smoothquant=ALPHA}`).

Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large Language
Models", ICML 2023 (arXiv:2211.10438); SmoothQuant+ (Pan et al., 2023) applies the same
smoothing ahead of 4-bit weight quantization.

A matmul's input often has a few channels whose values are 100x the others (LayerNorm outputs
of transformers, notably). One per-tensor activation scale must cover them, so every other
channel keeps only a few levels. Per input channel j, with migration strength alpha,

    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha),      X_j /= s_j,   W_j *= s_j

leaves X W unchanged and flattens the input's channels (alpha = 0.5 splits the range evenly
between activations and weights; W_j is row j of W, the weights input channel j multiplies).
Weights are quantized per output column, so the scaled rows cost them little.

Layers sharing one input (say the query / key / value projections after a LayerNorm) share one
s, with max|W_j| taken over all their weights. The 1 / s goes where it costs nothing when the
input is made by a producer only these layers read:

- `layer_norm` over the last axis with constant (or absent) gamma / beta: gamma /= s, beta /= s;
- `matmul` with a constant 2-D weight: the weight's columns /= s;
- `mul` by a constant (K,) (a LayerNorm as ONNX imports it, before `fuse-patterns` makes it
  one op, ends in mul by gamma, add of beta): the constant /= s;
- either of the last two followed by an `add` of a constant (K,) bias: the bias /= s too;

and otherwise a float `mul` by the constant 1 / s is inserted in front of the layers. Only
matmul layers are smoothed (a conv's input channels are spatial maps a producer rarely scales
per channel for free). s is clipped to [1e-5, 1e5], and a channel with no signal (max |X_j| or
max |W_j| zero) keeps s_j = 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelc.ir.graph import Graph, Node
from modelc.passes.quant_edit import GraphEdit
from modelc.passes.quant_layers import Layer

S_MIN, S_MAX = 1e-5, 1e5


def smooth_scales(xmax: np.ndarray, wmax: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = xmax_j^alpha / wmax_j^(1 - alpha), clipped; 1 where either maximum is zero."""
    xmax, wmax = np.asarray(xmax, np.float64), np.asarray(wmax, np.float64)
    ok = (xmax > 0) & (wmax > 0)
    s = np.ones_like(xmax)
    s[ok] = xmax[ok] ** alpha / wmax[ok] ** (1.0 - alpha)
    return np.clip(s, S_MIN, S_MAX)


def smooth(
    graph: Graph,
    layers: Sequence[Layer],
    samples: Sequence[Mapping[str, np.ndarray]],
    alpha: float,
) -> tuple[Graph, dict[str, dict[str, Any]]]:
    """The float graph with each matmul layer's input smoothed, and per layer name what was
    done: the range of s and what took the 1 / s (`layer_norm`, `matmul`, `mul`, `matmul+add`,
    `mul+add`, or `inserted mul`). `samples`
    are the traced values (graph inputs included) of the float graph, one mapping per sample.
    """
    by_input: dict[str, list[Layer]] = {}
    for lay in layers:
        if lay.node.op == "matmul":
            by_input.setdefault(lay.x, []).append(lay)
    edit = GraphEdit(graph)
    done: dict[str, dict[str, Any]] = {}
    for x, lays in by_input.items():
        k = edit.data(lays[0].w).shape[0]
        xmax = np.zeros(k)
        for sample in samples:
            xmax = np.maximum(xmax, np.abs(np.asarray(sample[x], np.float64)).reshape(-1, k).max(0))
        wmax = np.max([np.abs(edit.data(lay.w)).max(axis=1) for lay in lays], axis=0)
        s = smooth_scales(xmax, wmax, alpha)
        where = _fold_into_producer(edit, graph, x, lays, s)
        new_x = x
        if where is None:
            where = "inserted mul"
            first = _current(edit, lays[0].node)
            loc = f"{first.loc}.smooth" if first.loc else ""
            new_x = edit.fresh(f"{x}.smooth")
            inv = edit.const(f"{x}.smooth_inv", (1.0 / s).astype(np.float32))
            edit.insert_before(first, edit.node("mul", [x, inv], {}, new_x, loc))
        for lay in lays:
            node = _current(edit, lay.node)
            w = edit.data(node.inputs[1]).astype(np.float64)
            w_new = edit.const(f"{lay.w}.smooth", (w * s[:, None]).astype(np.float32))
            edit.set_inputs(node, [new_x, w_new, *node.inputs[2:]])
            done[lay.name] = {"scale": [float(s.min()), float(s.max())], "folded_into": where}
    return edit.build(), done


def _current(edit: GraphEdit, original: Node) -> Node:
    """The node of `edit` that is (the rewritten form of) `original`: same output name."""
    name = original.outputs[0].name
    return next(n for n in edit.nodes if n.outputs and n.outputs[0].name == name)


def _fold_into_producer(
    edit: GraphEdit, graph: Graph, x: str, lays: Sequence[Layer], s: np.ndarray
) -> str | None:
    """Divide the producer of `x` by s when only these layers read `x`: returns what took the
    1 / s, or None when nothing can (then the caller inserts a mul)."""
    readers = {id(n) for n in graph.users.get(x, ())}
    if readers != {id(lay.node) for lay in lays} or x in graph.outputs:
        return None
    p = graph.producers.get(x)
    if p is None:
        return None
    if p.op == "layer_norm":
        return _fold_into_layer_norm(edit, graph, _current(edit, p), x, s)
    scaled: list[tuple[Node, str, np.ndarray]] = []  # (node, its constant input, new value)
    if p.op == "add":  # a constant bias (K,) after the producer proper
        c, other = _constant_operand(edit, p, len(s))
        if c is None or len(graph.users.get(other, ())) != 1 or other in graph.outputs:
            return None
        scaled.append((p, c, edit.data(c) / s))
        p = graph.producers.get(other)
        if p is None:
            return None
    if p.op == "mul":  # by a constant (K,): a decomposed LayerNorm's gamma, say
        c, _ = _constant_operand(edit, p, len(s))
        if c is None:
            return None
        scaled.append((p, c, edit.data(c) / s))
    elif p.op == "matmul":
        w = _current(edit, p).inputs[1]
        if w not in edit.constants or edit.data(w).shape[1:] != s.shape:
            return None
        if edit.data(w).ndim != 2 or edit.data(w).dtype != np.float32:
            return None
        scaled.append((p, w, edit.data(w) / s[None, :]))
    else:
        return None
    for node, c, value in scaled:
        cur = _current(edit, node)
        new = edit.const(f"{c}.smooth", value.astype(np.float64))
        edit.set_inputs(cur, [new if i == c else i for i in cur.inputs])
    return "+".join(n.op for n, _, _ in reversed(scaled))


def _constant_operand(edit: GraphEdit, node: Node, k: int) -> tuple[str | None, str]:
    """(the constant input of shape (k,), the other input) of a binary op, or (None, "")."""
    current = _current(edit, node)
    if len(current.inputs) != 2:
        return None, ""
    a, b = current.inputs
    if b in edit.constants and a not in edit.constants:
        c, other = b, a
    elif a in edit.constants and b not in edit.constants:
        c, other = a, b
    else:
        return None, ""
    if edit.data(c).shape != (k,) or edit.data(c).dtype != np.float32:
        return None, ""
    return c, other


def _fold_into_layer_norm(
    edit: GraphEdit, graph: Graph, ln: Node, x: str, s: np.ndarray
) -> str | None:
    """gamma /= s and beta /= s of a layer_norm over the last axis (gamma made if absent)."""
    ins = list(ln.inputs) + [""] * (3 - len(ln.inputs))
    rank = len(graph.types[x].shape)
    if int(ln.attrs["axis"]) != rank - 1 or any(i and i not in edit.constants for i in ins[1:]):
        return None
    k = len(s)
    gamma = np.broadcast_to(edit.data(ins[1]), (k,)) if ins[1] else np.ones(k)
    new = [ins[0], edit.const(f"{ins[1] or x + '.gamma'}.smooth", gamma / s)]
    if ins[2]:
        beta = np.broadcast_to(edit.data(ins[2]), (k,))
        new.append(edit.const(f"{ins[2]}.smooth", beta / s))
    edit.set_inputs(ln, new)
    return "layer_norm"
