"""The layers `quantize` works on, and what their weights see.

A layer is a conv (NCHW) or a matmul with a 2-D weight whose weight is a float constant, with
the bias it reads (conv's third input, or the constant of an `add` right after a matmul) and a
following relu / clip. The weight-refining methods (GPTQ, bias correction, SmoothQuant) all
want the same two views of a layer, so they live here once:

- its weight as rows: one (out channels, fan-in) matrix per conv group, rows = output
  channels, columns in the order of the layer's input patches (matmul: the columns of W^T);
- its input as patches: per group a (positions, fan-in) matrix whose row r is what output
  position r multiplies with a weight row (conv: im2col of the zero-padded input, so padding
  counts as the zeros the conv really reads; matmul: the rows of x).

`LayerInputs` accumulates sum(x x^T) and sum(x) over the calibration samples one sample at a
time, so no pass ever holds every sample's patches at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from modelc.ir.graph import Constant, Graph, Node


@dataclass(frozen=True)
class Layer:
    node: Node  # the conv or matmul
    x: str  # activation input
    w: str  # constant weight
    bias: str | None  # constant float bias
    bias_reader: Node | None  # the node reading the bias (conv itself, or matmul's add)
    out: str  # the value quantized after the layer (after a fused relu / clip)
    axis: int  # weight channel axis
    names: frozenset[str]  # what fallback / layer_bits may call it

    @property
    def name(self) -> str:
        """The layer's name in reports: its node loc, else its output value's name."""
        return self.node.loc or self.node.output.name


def match_layer(graph: Graph, n: Node, consts: Mapping[str, Constant]) -> Layer | None:
    """A conv (NCHW) or 2-D-weight matmul with a constant float weight and a run-time input."""
    users = graph.users
    if n.op == "conv":
        if n.attrs.get("layout", "nchw") != "nchw":
            return None
        axis = 0
    elif n.op != "matmul":
        return None
    else:
        axis = 1
    x, w = n.inputs[0], n.inputs[1]
    if x in consts or w not in consts or consts[w].data.dtype != np.float32:
        return None
    if n.op == "matmul" and consts[w].data.ndim != 2:
        return None
    bias, reader, out = None, None, n.output.name
    if n.op == "conv" and len(n.inputs) > 2 and n.inputs[2]:
        bias, reader = n.inputs[2], n
        if bias not in consts:
            return None
    names = {n.loc, n.output.name}
    nxt = users.get(out, ())
    if n.op == "matmul" and len(nxt) == 1 and nxt[0].op == "add" and out not in graph.outputs:
        add = nxt[0]
        other = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
        c = consts.get(other)
        if c is not None and c.data.shape == (consts[w].data.shape[1],):
            bias, reader, out = other, add, add.output.name
            names |= {add.loc, out}
            nxt = users.get(out, ())
    if len(nxt) == 1 and nxt[0].op in ("relu", "clip") and out not in graph.outputs:
        out = nxt[0].output.name
        names.add(out)
    return Layer(n, x, w, bias, reader, out, axis, frozenset(names - {""}))


def find_layers(graph: Graph) -> list[Layer]:
    """Every quantizable layer of `graph`, in graph order."""
    consts = graph.constant_map
    return [lay for n in graph.nodes if (lay := match_layer(graph, n, consts)) is not None]


# ---- the row view of weights -----------------------------------------------------------------


def groups_of(node: Node) -> int:
    return int(node.attrs.get("group", 1)) if node.op == "conv" else 1


def weight_rows(node: Node, w: np.ndarray) -> list[np.ndarray]:
    """Per group, the (out channels, fan-in) matrix y = rows @ patch (float64 copies)."""
    if node.op == "matmul":
        return [np.array(w.T, np.float64)]
    g = groups_of(node)
    mg = w.shape[0] // g
    return [np.array(w[i * mg : (i + 1) * mg].reshape(mg, -1), np.float64) for i in range(g)]


def from_rows(node: Node, shape: tuple[int, ...], rows: list[np.ndarray]) -> np.ndarray:
    """The inverse of `weight_rows`: group matrices back into the weight's layout."""
    if node.op == "matmul":
        return rows[0].T.reshape(shape)
    return np.concatenate(rows, axis=0).reshape(shape)


def row_scales(node: Node, scales: list[float], out_channels: int) -> list[np.ndarray]:
    """Per group, each row's weight scale (one scale for the tensor, or one per channel)."""
    s = np.asarray(scales if len(scales) > 1 else scales * out_channels, np.float64)
    g = groups_of(node)
    mg = out_channels // g
    return [s[i * mg : (i + 1) * mg] for i in range(g)]


# ---- the patch view of inputs ----------------------------------------------------------------


def im2col(
    x: np.ndarray,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[int, ...],
    dilations: tuple[int, ...],
) -> np.ndarray:
    """x[N, C, *I] -> patches[N * prod(O), C, *K]: what each output position of an NCHW conv
    reads, padding included (as zeros), for any number of spatial dims."""
    nsp = len(kernel)
    pad = [(0, 0), (0, 0)] + [(pads[i], pads[i + nsp]) for i in range(nsp)]
    xp = np.pad(x, pad)
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    win = sliding_window_view(xp, extent, axis=tuple(range(2, 2 + nsp)))  # [N, C, *P, *E]
    pick = (slice(None), slice(None))
    pick += tuple(slice(None, None, s) for s in strides)
    pick += tuple(slice(None, None, d) for d in dilations)
    win = win[pick]  # [N, C, *O, *K]
    order = (0, *range(2, 2 + nsp), 1, *range(2 + nsp, 2 + 2 * nsp))
    n, c = x.shape[0], x.shape[1]
    out_size = math.prod(win.shape[2 : 2 + nsp])
    return win.transpose(order).reshape(n * out_size, c, *kernel)


def patches(node: Node, x: np.ndarray, w_shape: tuple[int, ...]) -> list[np.ndarray]:
    """Per group, the (positions, fan-in) matrix of what the layer multiplies its rows with."""
    x = np.asarray(x, np.float64)
    if node.op == "matmul":
        return [x.reshape(-1, w_shape[0])]
    a = node.attrs
    kernel = tuple(w_shape[2:])
    nsp = len(kernel)
    strides = tuple(a.get("strides") or (1,) * nsp)
    pads = tuple(a.get("pads") or (0,) * (2 * nsp))
    dilations = tuple(a.get("dilations") or (1,) * nsp)
    cols = im2col(x, kernel, strides, pads, dilations)
    g = groups_of(node)
    cg = cols.shape[1] // g
    return [cols[:, i * cg : (i + 1) * cg].reshape(len(cols), -1) for i in range(g)]


@dataclass(frozen=True)
class LayerInputs:
    """Statistics of a layer's input patches over the calibration set, per group."""

    xtx: tuple[np.ndarray, ...]  # sum of x x^T over positions: (fan-in, fan-in), or empty
    xsum: tuple[np.ndarray, ...]  # sum of x over positions: (fan-in,)
    count: int  # positions seen

    def mean(self, group: int) -> np.ndarray:
        return self.xsum[group] / max(self.count, 1)

    def hessian(self, group: int) -> np.ndarray:
        """GPTQ's H = 2 X^T X / n: the Hessian of the mean squared output error in the weights
        of one row (the 1/n keeps its dampening relative and its size independent of n)."""
        return 2.0 * self.xtx[group] / max(self.count, 1)


def collect_inputs(
    node: Node, w_shape: tuple[int, ...], xs: Iterable[np.ndarray], second_moment: bool
) -> LayerInputs:
    """Accumulate the patch statistics of `node` over the input samples `xs` (sum x x^T only
    when `second_moment`: it is fan-in^2 per group)."""
    xtx: list[np.ndarray] | None = None
    xsum: list[np.ndarray] | None = None
    count = 0
    for x in xs:
        ps = patches(node, x, w_shape)
        if xsum is None:
            xsum = [np.zeros(p.shape[1]) for p in ps]
            xtx = [np.zeros((p.shape[1],) * 2) for p in ps] if second_moment else []
        assert xtx is not None
        for i, p in enumerate(ps):
            xsum[i] += p.sum(axis=0)
            if second_moment:
                xtx[i] += p.T @ p
        count += len(ps[0])
    return LayerInputs(tuple(xtx or ()), tuple(xsum or ()), count)
