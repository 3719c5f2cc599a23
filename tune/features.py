"""Features of the tuner's cost model: a configuration's one-hot knobs plus descriptors of the
model it quantizes.

Why descriptors: a cost model fitted on the trials of one model says little about another
unless it can tell the models apart. Quantune describes a CNN by eight counts (nodes, conv,
batch norm, activations, skip connections, depthwise and pointwise convs, size); here the
counts are joined by the statistics that decide *which knobs matter*: how heavy-tailed the
weights are (clipping), how much per-channel scales would gain over one scale per tensor
(granularity), and, when calibration data is at hand, how heavy-tailed and how often
non-negative the activations are (clipping, symmetric vs asymmetric schemes).

Descriptors are computed on the imported float graph, before any pass: batch norms are still
there when the exporter kept them, and no op has been fused away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from modelc.ir.graph import Graph, Node
from modelc.tune.space import Point, Space

# Ops counted as activation functions (the names of ir/ops/*.py). Max(x, 0) written as `max`
# is not counted: it cannot be told from a real max without looking at the operand.
ACTIVATIONS = frozenset(
    {
        "relu",
        "clip",
        "sigmoid",
        "tanh",
        "leaky_relu",
        "elu",
        "gelu",
        "hard_sigmoid",
        "hard_swish",
        "silu",
        "softplus",
    }
)

# At most this many calibration samples go through the float interpreter: the statistics are
# coarse (a ratio per layer, averaged), and the reference interpreter is slow on big models.
ACTIVATION_SAMPLES = 2


def model_descriptors(
    graph: Graph, calibration: Mapping[str, np.ndarray] | None = None
) -> dict[str, float]:
    """Descriptors of a model, keyed by name in sorted order; every value a finite float.

    The keys depend only on whether `calibration` is given (the `act_*` keys need it), so
    descriptors of different models line up column by column.
    """
    counts = _op_counts(graph)
    layers = _weighted_layers(graph)
    d: dict[str, float] = {
        **counts,
        "depthwise_share": counts["depthwise"] / counts["conv"] if counts["conv"] else 0.0,
        "log10_params": math.log10(1.0 + _parameter_count(graph)),
        "weight_outlier": _mean(_outlier_ratio(w) for _, w, _ in layers),
        "weight_channel_spread": _mean(_channel_spread(w, axis) for _, w, axis in layers),
    }
    if calibration is not None:
        d.update(_activation_stats(graph, calibration))
    return {k: float(np.nan_to_num(d[k], nan=0.0, posinf=0.0, neginf=0.0)) for k in sorted(d)}


def feature_names(space: Space, descriptor: Mapping[str, float]) -> list[str]:
    """Column names of `feature_vector`: `knob=label` one-hot columns, then descriptor keys."""
    return space.feature_names() + sorted(descriptor)


def feature_vector(space: Space, point: Point, descriptor: Mapping[str, float]) -> np.ndarray:
    """One row of the cost model's input: the point's one-hot encoding, then the descriptor
    values in sorted-key order (float32)."""
    values = np.asarray([descriptor[k] for k in sorted(descriptor)], np.float32)
    return np.concatenate([space.encode(point), values])


def feature_matrix(
    space: Space, points: Sequence[Point], descriptor: Mapping[str, float], keys: Sequence[str]
) -> np.ndarray:
    """`feature_vector` of many points of one model, with the descriptor columns given by
    `keys` (a key the descriptor lacks becomes NaN, which the trees treat as missing): how
    the trials of models described by different descriptor sets share one matrix."""
    onehot = np.stack([space.encode(p) for p in points]) if points else None
    if onehot is None:
        return np.zeros((0, len(space.feature_names()) + len(keys)), np.float32)
    values = np.asarray([descriptor.get(k, np.nan) for k in keys], np.float32)
    return np.concatenate([onehot, np.broadcast_to(values, (len(points), len(keys)))], axis=1)


# ---- graph structure --------------------------------------------------------------------------


def _op_counts(graph: Graph) -> dict[str, float]:
    consts = graph.constant_map
    c = dict.fromkeys(
        ("nodes", "conv", "batch_norm", "activation", "skip", "depthwise", "pointwise", "matmul"),
        0.0,
    )
    c["nodes"] = float(len(graph.nodes))
    for n in graph.nodes:
        if n.op == "conv":
            c["conv"] += 1
            if _is_depthwise(graph, n):
                c["depthwise"] += 1
            elif _is_pointwise(graph, n):
                c["pointwise"] += 1
        elif n.op == "batch_norm":
            c["batch_norm"] += 1
        elif n.op in ACTIVATIONS:
            c["activation"] += 1
        elif n.op == "matmul":
            c["matmul"] += 1
        elif n.op == "add" and sum(1 for i in n.inputs if i and i not in consts) >= 2:
            # Two run-time operands: a residual join (a bias add has a constant operand).
            c["skip"] += 1
    return c


def _weight_shape(graph: Graph, conv: Node) -> tuple[int, ...]:
    return tuple(int(d) for d in graph.types[conv.inputs[1]].shape)


def _is_depthwise(graph: Graph, conv: Node) -> bool:
    """One input channel per group, more than one group: w[M, C/group = 1, *K] in NCHW,
    w[*K, C/group = 1, M] in NHWC."""
    group = int(conv.attrs.get("group", 1))
    shape = _weight_shape(graph, conv)
    per_group = shape[-2] if conv.attrs.get("layout", "nchw") == "nhwc" else shape[1]
    return group > 1 and per_group == 1


def _is_pointwise(graph: Graph, conv: Node) -> bool:
    shape = _weight_shape(graph, conv)
    kernel = shape[:-2] if conv.attrs.get("layout", "nchw") == "nhwc" else shape[2:]
    return all(k == 1 for k in kernel)


def _parameter_count(graph: Graph) -> int:
    return sum(int(c.data.size) for c in graph.constants if c.data.dtype.kind == "f")


# ---- weight statistics ------------------------------------------------------------------------


def _weighted_layers(graph: Graph) -> list[tuple[Node, np.ndarray, int]]:
    """(layer, float weight, output-channel axis) of every conv and 2-D matmul whose weight is
    a constant: the layers quantization touches."""
    consts = graph.constant_map
    out = []
    for n in graph.nodes:
        if n.op not in ("conv", "matmul") or len(n.inputs) < 2 or n.inputs[1] not in consts:
            continue
        w = consts[n.inputs[1]].data
        if w.dtype.kind != "f" or w.size < 2:
            continue
        if n.op == "conv":
            axis = w.ndim - 1 if n.attrs.get("layout", "nchw") == "nhwc" else 0
        elif w.ndim == 2:
            axis = 1
        else:
            continue
        out.append((n, w, axis))
    return out


def _outlier_ratio(w: np.ndarray) -> float:
    """max|w| / std(w): large when a few weights stretch the range one scale must cover."""
    std = float(np.std(w))
    return float(np.max(np.abs(w))) / std if std > 0 else 0.0


def _channel_spread(w: np.ndarray, axis: int) -> float:
    """Per-tensor amax / median per-channel amax: how much finer scales per output channel
    would resolve the typical channel (1 = nothing to gain)."""
    per_channel = np.max(np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)), axis=1)
    median = float(np.median(per_channel))
    return float(np.max(per_channel)) / median if median > 0 else 0.0


def _mean(values: Iterable[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else 0.0


# ---- activation statistics --------------------------------------------------------------------


def _activation_stats(graph: Graph, calibration: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Over the run-time inputs of the weighted layers, on <= 2 calibration samples: the mean
    max|x| / p99.9|x| (heavy tails favour clipping: KL, percentile, MSE) and the share of
    inputs that are never negative (unsigned ranges favour asymmetric or uint8 schemes)."""
    from modelc.ir.interpreter import run_graph
    from modelc.passes.quantize import calibration_feeds

    feeds = calibration_feeds(graph, calibration, ACTIVATION_SAMPLES)
    names = sorted({n.inputs[0] for n, _, _ in _weighted_layers(graph)})
    seen: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for feed in feeds:
        traced = {**feed, **run_graph(graph, feed, trace=True)}
        for k in names:
            if k in traced:
                seen[k].append(np.asarray(traced[k], np.float64).ravel())
    tails, nonneg = [], []
    for k in names:
        if not seen[k]:
            continue
        x = np.concatenate(seen[k])
        p999 = float(np.percentile(np.abs(x), 99.9))
        tails.append(float(np.max(np.abs(x))) / p999 if p999 > 0 else 1.0)
        nonneg.append(1.0 if float(np.min(x)) >= 0 else 0.0)
    return {
        "act_nonnegative_share": _mean(nonneg),
        "act_outlier": _mean(tails) if tails else 1.0,
    }
