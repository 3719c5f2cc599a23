"""Model descriptors against hand counts on small graphs, and the cost model's feature rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelc.ir import dtypes as D
from modelc.ir.graph import Graph, GraphBuilder
from modelc.ir.types import TensorType
from modelc.tune.features import (
    feature_matrix,
    feature_names,
    feature_vector,
    model_descriptors,
)
from modelc.tune.space import EXTENDED, QUANTUNE

CONV = {"strides": [1, 1], "dilations": [1, 1]}
POOL = {"kernel": [2, 2], "strides": [2, 2], "pads": [0] * 4, "dilations": [1, 1]}


def small_net() -> Graph:
    """conv -> relu -> max_pool -> conv -> relu -> reshape -> matmul + bias (as in
    tests/passes/test_quantize.py)."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("small", fold=False)
    x = b.add_input("x", TensorType((1, 3, 8, 8), D.f32))
    w1 = b.add_constant(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w1")
    b1 = b.add_constant(rng.standard_normal(4).astype(np.float32) * 0.1, "b1")
    w2 = b.add_constant(rng.standard_normal((5, 4, 3, 3)).astype(np.float32) * 0.3, "w2")
    b2 = b.add_constant(rng.standard_normal(5).astype(np.float32) * 0.1, "b2")
    w3 = b.add_constant(rng.standard_normal((20, 6)).astype(np.float32) * 0.3, "w3")
    b3 = b.add_constant(rng.standard_normal(6).astype(np.float32) * 0.1, "b3")
    h = b.add("conv", x, w1, b1, loc="conv1", pads=[1] * 4, **CONV)
    h = b.add("relu", h, loc="relu1")
    h = b.add("max_pool", h, loc="pool1", **POOL)
    h = b.add("conv", h, w2, b2, loc="conv2", pads=[0] * 4, **CONV)
    h = b.add("relu", h, loc="relu2")
    h = b.add("reshape", h, loc="flat", shape=[1, 20])
    h = b.add("matmul", h, w3, loc="fc")
    h = b.add("add", h, b3, loc="fc_bias")
    b.set_outputs([h])
    return b.build()


def mobile_block() -> Graph:
    """depthwise 3x3 -> batch_norm -> clip -> pointwise 1x1 -> add(x) -> sigmoid."""
    rng = np.random.default_rng(1)
    b = GraphBuilder("block", fold=False)
    x = b.add_input("x", TensorType((1, 4, 6, 6), D.f32))
    wd = b.add_constant(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "wd")
    bn = [
        b.add_constant(v.astype(np.float32), n)
        for v, n in (
            (rng.uniform(0.5, 1.5, 4), "gamma"),
            (rng.standard_normal(4), "beta"),
            (rng.standard_normal(4), "mean"),
            (rng.uniform(0.5, 1.5, 4), "var"),
        )
    ]
    wp = b.add_constant(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "wp")
    h = b.add("conv", x, wd, loc="dw", pads=[1] * 4, group=4, **CONV)
    h = b.add("batch_norm", h, *bn, loc="bn")
    h = b.add("clip", h, loc="relu6", min=0.0, max=6.0)
    h = b.add("conv", h, wp, loc="pw", pads=[0] * 4, **CONV)
    h = b.add("add", x, h, loc="skip")
    h = b.add("sigmoid", h, loc="act")
    b.set_outputs([h])
    return b.build()


def test_counts_of_small_net() -> None:
    d = model_descriptors(small_net())
    counts = {k: d[k] for k in ("nodes", "conv", "batch_norm", "activation", "skip", "matmul")}
    assert counts == {
        "nodes": 8,
        "conv": 2,
        "batch_norm": 0,
        "activation": 2,
        "skip": 0,  # the bias add has a constant operand
        "matmul": 1,
    }
    assert d["depthwise"] == d["pointwise"] == d["depthwise_share"] == 0
    params = 4 * 27 + 4 + 5 * 36 + 5 + 20 * 6 + 6
    assert d["log10_params"] == pytest.approx(math.log10(1 + params))


def test_depthwise_pointwise_batch_norm_and_skip() -> None:
    d = model_descriptors(mobile_block())
    assert (d["nodes"], d["conv"], d["depthwise"], d["pointwise"]) == (6, 2, 1, 1)
    assert (d["batch_norm"], d["activation"], d["skip"], d["matmul"]) == (1, 2, 1, 0)
    assert d["depthwise_share"] == 0.5


def test_weight_statistics_by_hand() -> None:
    """One matmul layer: max|w| / std(w), and per-tensor amax over the median column amax."""
    w = np.array([[4.0, -1.0, 0.5], [1.0, 2.0, -0.5]], np.float32)
    b = GraphBuilder("fc", fold=False)
    x = b.add_input("x", TensorType((1, 2), D.f32))
    b.set_outputs([b.add("matmul", x, b.add_constant(w, "w"))])
    d = model_descriptors(b.build())
    assert d["weight_outlier"] == pytest.approx(4.0 / float(np.std(w)), rel=1e-6)
    assert d["weight_channel_spread"] == pytest.approx(4.0 / 2.0)  # columns: 4, 2, 0.5


def test_keys_sorted_finite_and_activation_statistics() -> None:
    g = small_net()
    plain = model_descriptors(g)
    calib = {"x": np.random.default_rng(1).standard_normal((4, 1, 3, 8, 8)).astype(np.float32)}
    full = model_descriptors(g, calib)
    for d in (plain, full):
        assert list(d) == sorted(d)
        assert all(isinstance(v, float) and math.isfinite(v) for v in d.values())
    assert set(full) - set(plain) == {"act_outlier", "act_nonnegative_share"}
    assert {k: full[k] for k in plain} == plain
    # Layer inputs: x (signed), pool(relu) and reshape(relu) (never negative).
    assert full["act_nonnegative_share"] == pytest.approx(2 / 3)
    assert full["act_outlier"] >= 1.0
    assert model_descriptors(g, calib) == full  # deterministic


def test_feature_vector_is_one_hot_then_descriptor() -> None:
    d = model_descriptors(mobile_block())
    for space in (QUANTUNE, EXTENDED):
        p = space.points()[5]
        v = feature_vector(space, p, d)
        assert v.shape == (len(space.feature_names()) + len(d),)
        assert np.array_equal(v[: len(space.feature_names())], space.encode(p))
        assert v[len(space.feature_names()) :].tolist() == pytest.approx([d[k] for k in sorted(d)])
        names = feature_names(space, d)
        assert len(names) == len(v) and names[-len(d) :] == sorted(d)
        assert names[: len(space.feature_names())] == space.feature_names()


def test_feature_matrix_marks_missing_descriptors() -> None:
    points = QUANTUNE.points()[:3]
    m = feature_matrix(QUANTUNE, points, {"b": 2.0}, ["a", "b"])
    assert m.shape == (3, len(QUANTUNE.feature_names()) + 2)
    assert np.isnan(m[:, -2]).all() and (m[:, -1] == 2.0).all()
    assert np.array_equal(m[1], np.concatenate([QUANTUNE.encode(points[1]), [np.nan, 2.0]]), True)
    assert feature_matrix(QUANTUNE, [], {}, ["a"]).shape == (0, len(QUANTUNE.feature_names()) + 1)
