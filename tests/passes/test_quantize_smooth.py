"""`quantize{smoothquant=ALPHA}`: the smoothing factors against the formula, the smoothed float
graph equal to the original (1 / s folded into a layer_norm, into a producing matmul + bias, or
a mul inserted), and the quantized output of a matmul with outlier input channels."""

from __future__ import annotations

import numpy as np
import pytest

from modelc.ir import dtypes as D
from modelc.ir.graph import Graph, GraphBuilder
from modelc.ir.interpreter import run_graph
from modelc.ir.types import TensorType
from modelc.passes import quant_calibrate as C
from modelc.passes.quant_layers import find_layers
from modelc.passes.quant_smooth import S_MAX, S_MIN, smooth, smooth_scales
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline

K, N, ROWS = 32, 16, 8
OUTLIERS = [3, 17, 30]  # input channels 100x larger than the rest

FOLD = "fold-qdq,fold-constants,eliminate-dead-code"


def test_smooth_scales_formula() -> None:
    rng = np.random.default_rng(0)
    xmax, wmax = rng.uniform(0.1, 50, 20), rng.uniform(0.01, 2, 20)
    for alpha in (0.0, 0.5, 0.8, 1.0):
        want = np.clip(xmax**alpha / wmax ** (1 - alpha), S_MIN, S_MAX)
        np.testing.assert_allclose(smooth_scales(xmax, wmax, alpha), want, rtol=1e-12)
    s = smooth_scales(np.array([0.0, 2.0, 1e12]), np.array([1.0, 0.0, 1e-12]), 0.5)
    assert s[0] == 1.0 and s[1] == 1.0 and s[2] == S_MAX


def weights(rng: np.random.Generator, k: int = K, n: int = N) -> np.ndarray:
    return (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)


def outlier_input(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, ROWS, K))
    x[..., OUTLIERS] *= 100.0
    return x.astype(np.float32)


def plain_matmul() -> Graph:
    b = GraphBuilder("mm", fold=False)
    x = b.add_input("x", TensorType((ROWS, K), D.f32))
    w = b.add_constant(weights(np.random.default_rng(1)), "w")
    b.set_outputs([b.add("matmul", x, w, loc="fc")])
    return b.build()


def layer_norm_qkv() -> Graph:
    """layer_norm (gamma with outlier channels) -> three projections sharing its output."""
    rng = np.random.default_rng(2)
    gamma = rng.uniform(0.5, 1.5, K).astype(np.float32)
    gamma[OUTLIERS] *= 100.0
    b = GraphBuilder("ln", fold=False)
    x = b.add_input("x", TensorType((ROWS, K), D.f32))
    g = b.add_constant(gamma, "gamma")
    be = b.add_constant(rng.standard_normal(K).astype(np.float32), "beta")
    h = b.add("layer_norm", x, g, be, loc="ln", axis=1)
    outs = [b.add("matmul", h, b.add_constant(weights(rng), n), loc=n) for n in ("q", "k", "v")]
    b.set_outputs(outs)
    return b.build()


def mlp() -> Graph:
    """matmul + bias (its output columns scaled like outliers) -> relu-free second matmul."""
    rng = np.random.default_rng(3)
    w1 = weights(rng, K, K)
    w1[:, OUTLIERS] *= 100.0
    b = GraphBuilder("mlp", fold=False)
    x = b.add_input("x", TensorType((ROWS, K), D.f32))
    h = b.add("matmul", x, b.add_constant(w1, "w1"), loc="fc1")
    h = b.add("add", h, b.add_constant(rng.standard_normal(K).astype(np.float32), "b1"))
    b.set_outputs([b.add("matmul", h, b.add_constant(weights(rng), "w2"), loc="fc2")])
    return b.build()


def traces(g: Graph, xs: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [{"x": x, **run_graph(g, {"x": x}, trace=True)} for x in xs]


def check_equivalent(g: Graph, sg: Graph, xs: np.ndarray) -> None:
    for x in xs[:3]:
        want, got = run_graph(g, {"x": x}), run_graph(sg, {"x": x})
        for name in g.outputs:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-3)


def test_mul_inserted_for_a_graph_input() -> None:
    g = plain_matmul()
    xs = outlier_input(np.random.default_rng(4), 6)
    sg, done = smooth(g, find_layers(g), traces(g, xs), 0.5)
    w = g.constant_map["w"].data.astype(np.float64)
    s = np.sqrt(np.abs(xs).reshape(-1, K).max(0)) / np.sqrt(np.abs(w).max(axis=1))
    (mul,) = [n for n in sg.nodes if n.op == "mul"]
    np.testing.assert_allclose(sg.constant_map[mul.inputs[1]].data, 1 / s, rtol=1e-6)
    (mm,) = [n for n in sg.nodes if n.op == "matmul"]
    assert mm.inputs[0] == mul.output.name
    np.testing.assert_allclose(sg.constant_map[mm.inputs[1]].data, w * s[:, None], rtol=1e-6)
    assert done["fc"]["folded_into"] == "inserted mul"
    check_equivalent(g, sg, xs)


def test_folded_into_layer_norm_with_one_s_for_shared_input() -> None:
    g = layer_norm_qkv()
    xs = np.random.default_rng(5).standard_normal((6, ROWS, K)).astype(np.float32)
    tr = traces(g, xs)
    sg, done = smooth(g, find_layers(g), tr, 0.5)
    assert "mul" not in [n.op for n in sg.nodes]
    (ln,) = [n for n in g.nodes if n.op == "layer_norm"]
    h = ln.output.name
    xmax = np.max([np.abs(t[h]).max(axis=0) for t in tr], axis=0)
    wmax = np.max([np.abs(g.constant_map[n].data).max(axis=1) for n in ("q", "k", "v")], axis=0)
    s = np.sqrt(xmax) / np.sqrt(wmax)
    (sln,) = [n for n in sg.nodes if n.op == "layer_norm"]
    gamma, beta = g.constant_map["gamma"].data, g.constant_map["beta"].data
    np.testing.assert_allclose(sg.constant_map[sln.inputs[1]].data, gamma / s, rtol=1e-5)
    np.testing.assert_allclose(sg.constant_map[sln.inputs[2]].data, beta / s, rtol=1e-5)
    assert {v["folded_into"] for v in done.values()} == {"layer_norm"} and len(done) == 3
    check_equivalent(g, sg, xs)


def test_folded_into_producing_matmul_and_bias() -> None:
    g = mlp()
    xs = np.random.default_rng(6).standard_normal((6, ROWS, K)).astype(np.float32)
    sg, done = smooth(g, find_layers(g), traces(g, xs), 0.5)
    assert done["fc2"]["folded_into"] == "matmul+add"
    assert done["fc1"]["folded_into"] == "inserted mul"  # fc1 reads the graph input
    assert [n.op for n in sg.nodes] == ["mul", "matmul", "add", "matmul"]
    fc1, add = sg.nodes[1], sg.nodes[2]
    h = g.nodes[1].output.name  # the bias add's output: fc2's input
    t = traces(g, xs)
    w2 = g.constant_map["w2"].data
    s2 = np.sqrt(np.max([np.abs(x[h]).max(axis=0) for x in t], axis=0) / np.abs(w2).max(axis=1))
    s1 = np.sqrt(np.abs(xs).reshape(-1, K).max(0) / np.abs(g.constant_map["w1"].data).max(axis=1))
    w1 = g.constant_map["w1"].data.astype(np.float64) * s1[:, None] / s2[None, :]
    np.testing.assert_allclose(sg.constant_map[fc1.inputs[1]].data, w1, rtol=1e-5)
    b1 = g.constant_map["b1"].data / s2
    np.testing.assert_allclose(sg.constant_map[add.inputs[1]].data, b1, rtol=1e-5)
    check_equivalent(g, sg, xs)


def test_folded_into_decomposed_layer_norm_affine() -> None:
    """mul by gamma, add of beta (how LayerNormalization imports before fuse-patterns)."""
    rng = np.random.default_rng(10)
    b = GraphBuilder("affine", fold=False)
    x = b.add_input("x", TensorType((ROWS, K), D.f32))
    h = b.add("tanh", x)
    h = b.add("mul", h, b.add_constant(rng.uniform(1, 100, K).astype(np.float32), "gamma"))
    h = b.add("add", b.add_constant(rng.standard_normal(K).astype(np.float32), "beta"), h)
    b.set_outputs([b.add("matmul", h, b.add_constant(weights(rng), "w"), loc="fc")])
    g = b.build()
    xs = rng.standard_normal((4, ROWS, K)).astype(np.float32)
    sg, done = smooth(g, find_layers(g), traces(g, xs), 0.5)
    assert done["fc"]["folded_into"] == "mul+add"
    assert [n.op for n in sg.nodes] == ["tanh", "mul", "add", "matmul"]
    check_equivalent(g, sg, xs)


def quantized_sqnr(g: Graph, data: np.ndarray, spec: str) -> tuple[float, PassContext]:
    ctx = PassContext(verify=True, calibration={"x": data})
    q = run_pipeline(g, parse_pipeline(spec), ctx)
    folded = run_pipeline(q, parse_pipeline(FOLD), PassContext(verify=True))
    test = outlier_input(np.random.default_rng(9), 4) if g.name == "mm" else data[:4] + 0.1
    ref = np.concatenate([run_graph(g, {"x": x})[g.outputs[0]].ravel() for x in test])
    got = np.concatenate([run_graph(folded, {"x": x})[g.outputs[0]].ravel() for x in test])
    return C.sqnr_db(ref, got), ctx


@pytest.mark.parametrize("net", ["matmul", "layer_norm"])
def test_smoothing_raises_quantized_sqnr(net: str) -> None:
    rng = np.random.default_rng(7)
    if net == "matmul":
        g, data = plain_matmul(), outlier_input(rng, 8)
    else:
        g, data = layer_norm_qkv(), rng.standard_normal((8, ROWS, K)).astype(np.float32)
    plain, _ = quantized_sqnr(g, data, "quantize")
    smoothed, ctx = quantized_sqnr(g, data, "quantize{smoothquant=0.5}")
    assert smoothed > plain + 5  # dB (measured: +9.6 and +6.4)
    rows = ctx.reports["quantize"]["layers"]
    assert all("smoothquant" in row for row in rows.values())
    assert ctx.reports["quantize"]["config"]["smoothquant"] == 0.5


def test_fallback_reader_keeps_producer_and_inserts_mul() -> None:
    """k left float still reads the layer_norm output: gamma must not change."""
    g = layer_norm_qkv()
    data = np.random.default_rng(8).standard_normal((4, ROWS, K)).astype(np.float32)
    ctx = PassContext(verify=True, calibration={"x": data})
    q = run_pipeline(g, parse_pipeline("quantize{smoothquant=0.5,fallback=k}"), ctx)
    (ln,) = [n for n in q.nodes if n.op == "layer_norm"]
    assert ln.inputs[1] == "gamma"
    assert [n.op for n in q.nodes].count("mul") == 1
    rows = ctx.reports["quantize"]["layers"]
    assert rows["q"]["smoothquant"]["folded_into"] == "inserted mul" and "k" not in rows
