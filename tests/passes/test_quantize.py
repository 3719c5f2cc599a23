"""The `quantize` pass: calibration methods against numpy references, quantization parameters
against hand formulas, weights per channel / int4, fallback, the JSON config, and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from modelc.errors import InputError, PipelineError
from modelc.ir import dtypes as D
from modelc.ir.graph import Graph, GraphBuilder
from modelc.ir.interpreter import run_graph
from modelc.ir.types import TensorType
from modelc.passes import quant_calibrate as C
from modelc.passes.quantize import QuantConfig, Quantize, calibration_feeds
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline

POOL = {"kernel": [2, 2], "strides": [2, 2], "pads": [0] * 4, "dilations": [1, 1]}
FOLD = "fold-qdq,fold-constants,eliminate-dead-code"


def small_net() -> Graph:
    """conv(3->4) -> relu -> max_pool -> conv(4->5) -> relu -> reshape -> matmul + bias."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("small", fold=False)
    x = b.add_input("x", TensorType((1, 3, 8, 8), D.f32))
    w1 = b.add_constant(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w1")
    b1 = b.add_constant(rng.standard_normal(4).astype(np.float32) * 0.1, "b1")
    w2 = b.add_constant(rng.standard_normal((5, 4, 3, 3)).astype(np.float32) * 0.3, "w2")
    b2 = b.add_constant(rng.standard_normal(5).astype(np.float32) * 0.1, "b2")
    w3 = b.add_constant(rng.standard_normal((5 * 2 * 2, 6)).astype(np.float32) * 0.3, "w3")
    b3 = b.add_constant(rng.standard_normal(6).astype(np.float32) * 0.1, "b3")
    h = b.add("conv", x, w1, b1, loc="conv1", pads=[1] * 4, strides=[1, 1], dilations=[1, 1])
    h = b.add("relu", h, loc="relu1")
    h = b.add("max_pool", h, loc="pool1", **POOL)
    h = b.add("conv", h, w2, b2, loc="conv2", pads=[0] * 4, strides=[1, 1], dilations=[1, 1])
    h = b.add("relu", h, loc="relu2")
    h = b.add("reshape", h, loc="flat", shape=[1, 20])
    h = b.add("matmul", h, w3, loc="fc")
    h = b.add("add", h, b3, loc="fc_bias")
    b.set_outputs([h])
    return b.build()


def calib(n: int = 16, seed: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((n, 1, 3, 8, 8)).astype(np.float32)}


def quantize(graph: Graph, spec: str = "quantize", data=None) -> tuple[Graph, PassContext]:
    ctx = PassContext(verify=True, calibration=calib() if data is None else data)
    return run_pipeline(graph, parse_pipeline(spec), ctx), ctx


# ---- calibration methods ----------------------------------------------------------------------


def batches() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.standard_normal(500).astype(np.float32) * (1 + i) + i for i in range(5)]


def test_minmax_and_moving_average() -> None:
    bs = batches()
    every = np.concatenate(bs)
    assert C.minmax_range(bs) == (float(every.min()), float(every.max()))
    lo, hi = float(bs[0].min()), float(bs[0].max())
    for b in bs[1:]:
        lo = lo + 0.1 * (float(b.min()) - lo)
        hi = hi + 0.1 * (float(b.max()) - hi)
    assert C.moving_average_range(bs, 0.1) == pytest.approx((lo, hi), rel=1e-12)


def test_percentile_exact() -> None:
    v = np.concatenate(batches())
    t = np.sort(np.abs(v).astype(np.float64))
    # numpy's linear interpolation written out: position p/100 * (n - 1)
    pos = 0.999 * (len(t) - 1)
    want = t[int(pos)] + (pos - int(pos)) * (t[int(pos) + 1] - t[int(pos)])
    assert C.percentile_range(v, 99.9, True) == pytest.approx((-want, want), rel=1e-6)
    lo, hi = C.percentile_range(v, 99.0, False)
    assert (lo, hi) == (float(np.percentile(v, 1.0)), float(np.percentile(v, 99.0)))


def brute_kl(hist: list[float], levels: int) -> int:
    """TensorRT's entropy search, written as plain loops: the best threshold bin count."""
    best, best_kl = len(hist), math.inf
    for i in range(levels, len(hist) + 1):
        p = list(hist[:i])
        p[-1] += sum(hist[i:])
        q = [0.0] * i
        per = i / levels
        for j in range(levels):
            a = int(j * per)
            b = i if j == levels - 1 else int((j + 1) * per)
            nz = [k for k in range(a, b) if hist[k] != 0]
            for k in nz:
                q[k] = sum(hist[a:b]) / len(nz)
        ps, qs = sum(p), sum(q)
        kl = 0.0
        for pk, qk in zip(p, q):
            if pk > 0:
                kl = math.inf if qk == 0 else kl + pk / ps * math.log((pk / ps) / (qk / qs))
        if kl < best_kl:
            best, best_kl = i, kl
    return best


def test_kl_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    for trial in range(4):
        v = np.abs(rng.standard_normal(3000) * (1 + trial)) ** (1 + trial / 2)
        hist, _ = np.histogram(v, bins=48, range=(0, float(v.max())))
        width = float(v.max()) / 48
        want = brute_kl([float(h) for h in hist], 8) * width
        assert C.kl_threshold(hist, width, 8) == pytest.approx(want)


def test_kl_ignores_exact_zeros() -> None:
    v = np.abs(np.random.default_rng(7).standard_normal(5000)).astype(np.float32)
    with_zeros = np.concatenate([v, np.zeros(20000, np.float32)])
    hi = float(v.max())
    assert C.kl_range(with_zeros, 8, 0.0, hi) == C.kl_range(v, 8, 0.0, hi)
    lo, t = C.kl_range(v, 8, 0.0, hi)
    assert lo == 0.0 and 0 < t <= hi


def test_mse_matches_brute_force() -> None:
    rng = np.random.default_rng(6)
    v = np.concatenate([rng.standard_normal(4000), [25.0, -18.0]])  # outliers worth clipping
    lo, hi = float(v.min()), float(v.max())
    hist, edges = np.histogram(v, bins=C.HIST_BINS, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    nz = np.nonzero(hist)[0]
    best, best_err = None, math.inf
    for k in range(1, C.MSE_RATIOS + 1):
        r = k / C.MSE_RATIOS
        s = (r * hi - r * lo) / 255
        s = float(np.float32(s))
        zp = int(min(127, max(-128, round(-128 - r * lo / s))))
        err = 0.0
        for i in nz:
            q = min(127, max(-128, round(float(centres[i]) / s) + zp))
            err += float(hist[i]) * (float(centres[i]) - (q - zp) * s) ** 2
        if err < best_err:
            best, best_err = r, err
    assert best is not None and best < 1.0
    assert C.mse_range(v, 8, lo, hi, "asymmetric", False) == pytest.approx((best * lo, best * hi))


# ---- parameters -------------------------------------------------------------------------------


def test_qparams_hand_formulas() -> None:
    s, zp = C.qparams(-1.0, 3.0, 8, "symmetric", False)
    assert (s, zp) == (pytest.approx(3.0 / 127), 0)
    s, zp = C.qparams(-1.0, 3.0, 8, "asymmetric", False)
    assert s == pytest.approx(4.0 / 255) and zp == round(-128 + 1.0 / s)
    s, zp = C.qparams(0.5, 2.0, 8, "asymmetric", False)  # widened to hold 0
    assert s == pytest.approx(2.0 / 255) and zp == -128
    s, zp = C.qparams(-1.0, 3.0, 8, "symmetric", True)
    assert s == 2.0 ** math.ceil(math.log2(3.0 / 127)) and zp == 0
    s, _ = C.qparams(-0.3, 0.3, 4, "symmetric", False)
    assert s == pytest.approx(0.3 / 7)
    assert C.qparams(0.0, 0.0, 8, "asymmetric", False) == (1.0, -128)


def dq_weights(graph: Graph) -> dict[str, tuple[np.ndarray, list[float], int | None]]:
    """Integer weights under the dequantizes the pass made: constant -> (data, scales, axis)."""
    out = {}
    for n in graph.nodes:
        if n.op == "dequantize" and n.inputs[0] in graph.constant_map:
            c = graph.constant_map[n.inputs[0]]
            out[n.inputs[0]] = (c.data, list(n.attrs["scale"]), n.attrs["axis"])
    return out


def test_per_channel_and_per_tensor_weight_scales() -> None:
    g = small_net()
    w1 = g.constant("w1")
    assert w1 is not None
    q, _ = quantize(g)
    data, scales, axis = dq_weights(q)["w1.int8"]
    want = np.abs(w1).reshape(4, -1).max(axis=1) / 127
    assert axis == 0 and scales == pytest.approx(want.tolist(), rel=1e-6)
    assert np.array_equal(data, np.clip(np.rint(w1 / want.reshape(4, 1, 1, 1)), -128, 127))
    _, scales3, axis3 = dq_weights(q)["w3.int8"]
    assert axis3 == 1 and len(scales3) == 6  # matmul weights: per column
    q, _ = quantize(g, "quantize{per_channel=false}")
    _, scales, axis = dq_weights(q)["w1.int8"]
    assert axis is None and scales == pytest.approx([float(np.abs(w1).max()) / 127])


def test_int4_weights_stay_in_range() -> None:
    q, ctx = quantize(small_net(), "quantize{weight_bits=4," + "layer_bits=conv2:8}")
    ws = dq_weights(q)
    for name in ("w1.int4", "w3.int4"):
        data = ws[name][0]
        assert q.constant_map[name].value.type.dtype == D.i4
        assert data.min() >= -8 and data.max() <= 7
        assert max(-int(data.min()), int(data.max())) == 7  # the largest |w| maps to 7
    assert "w2.int8" in ws
    assert ctx.reports["quantize"]["layers"]["conv2"]["weight_bits"] == 8
    folded = run_pipeline(q, parse_pipeline(FOLD), PassContext(verify=True))
    assert [n.op for n in folded.nodes].count("qconv") == 2


def test_integer_graph_and_report() -> None:
    g = small_net()
    q, ctx = quantize(g)
    folded = run_pipeline(q, parse_pipeline(FOLD), PassContext(verify=True))
    ops = [n.op for n in folded.nodes]
    assert "conv" not in ops and "matmul" not in ops and "max_pool" in ops
    assert ops.count("qconv") == 2 and ops.count("qmatmul") == 1
    rep = ctx.reports["quantize"]
    assert rep["quantized"] == 3
    for row in rep["layers"].values():
        assert row["sqnr_db"] > 25 and row["weight_bits"] == 8
    x = calib(1, seed=9)["x"][0]
    want = run_graph(g, {"x": x})[g.outputs[0]]
    got = run_graph(folded, {"x": x})[g.outputs[0]]
    assert C.sqnr_db(want, got) > 20


@pytest.mark.parametrize("method", C.METHODS)
@pytest.mark.parametrize("scheme", C.SCHEMES)
def test_every_method_and_scheme_folds_to_integers(method: str, scheme: str) -> None:
    q, ctx = quantize(small_net(), f"quantize{{method={method},scheme={scheme}}}")
    folded = run_pipeline(q, parse_pipeline(FOLD), PassContext(verify=True))
    assert [n.op for n in folded.nodes].count("qconv") == 2
    for row in ctx.reports["quantize"]["layers"].values():
        lo, hi = row["activation_range"]
        assert lo <= 0 <= hi and row["sqnr_db"] > 5  # moving_average sees ~1 sample


def test_fallback_leaves_layer_float() -> None:
    q, ctx = quantize(small_net(), "quantize{fallback=conv2}")
    folded = run_pipeline(q, parse_pipeline(FOLD), PassContext(verify=True))
    convs = {n.loc: n.op for n in folded.nodes if n.op in ("conv", "qconv")}
    assert convs == {"conv1": "qconv", "conv2": "conv"}
    assert "conv2" not in ctx.reports["quantize"]["layers"]
    with pytest.raises(PipelineError, match="conv9"):
        quantize(small_net(), "quantize{fallback=conv9}")


def test_idempotent_on_quantized_graph() -> None:
    q, _ = quantize(small_net())
    again, _ = quantize(q)
    assert again == q  # weights are integer now: nothing left to quantize


# ---- configuration and errors -----------------------------------------------------------------


def test_config_json_round_trip(tmp_path) -> None:
    cfg = QuantConfig(
        method="kl",
        scheme="symmetric",
        per_channel=False,
        weight_bits=4,
        layer_bits="conv1:8",
        fallback="conv2,fc",
        percentile=99.9,
        samples=8,
        bias_correction=True,
        rounding="gptq",
        smoothquant=0.5,
    )
    text = cfg.to_json()
    assert {"bias_correction": True, "rounding": "gptq", "smoothquant": 0.5}.items() <= (
        json.loads(text).items()
    )
    assert QuantConfig.from_json(text) == cfg
    path = tmp_path / "best.json"
    path.write_text(text)
    assert QuantConfig.from_json(path) == cfg
    assert QuantConfig.from_json({"fallback": ["conv2", "fc"]}).fallback_names() == ("conv2", "fc")
    (p,) = parse_pipeline("quantize{method=kl,fallback=conv2,fc}")
    assert isinstance(p, Quantize) and p.fallback_names() == ("conv2", "fc")
    assert p.config() == QuantConfig(method="kl", fallback="conv2,fc")
    with pytest.raises(InputError, match="unknown keys"):
        QuantConfig.from_json({"bits": 8})
    with pytest.raises(InputError, match="method"):
        QuantConfig.from_json({"method": "magic"})
    (p,) = parse_pipeline("quantize{bias_correction=true,rounding=gptq,smoothquant=0.5}")
    assert p.config() == QuantConfig(bias_correction=True, rounding="gptq", smoothquant=0.5)
    assert QuantConfig().to_json() == QuantConfig.from_json(QuantConfig().to_json()).to_json()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rounding": "stochastic"}, "rounding must be one of"),
        ({"smoothquant": 1.5}, r"smoothquant .* must be in \[0, 1\]"),
        ({"smoothquant": -0.1}, "smoothquant"),
        ({"smoothquant": "half"}, "smoothquant"),
        ({"bias_correction": "yes"}, "bias_correction must be true or false"),
        ({"scheme": "unsigned"}, "scheme must be one of"),
    ],
)
def test_new_fields_are_validated(fields: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        QuantConfig.from_json(fields)
    with pytest.raises(ValueError, match=message):
        QuantConfig(**fields)


def test_errors() -> None:
    g = small_net()
    with pytest.raises(PipelineError, match="calibration"):
        run_pipeline(g, parse_pipeline("quantize"), PassContext())
    with pytest.raises(InputError, match="no samples for model inputs"):
        quantize(g, data={"y": np.zeros((2, 1, 3, 8, 8), np.float32)})
    with pytest.raises(InputError, match="do not fit"):
        quantize(g, data={"x": np.zeros((2, 3, 9, 9), np.float32)})


def test_calibration_layouts_and_sample_count() -> None:
    g = small_net()
    stacked = calib(6)
    flat = {"x": stacked["x"].reshape(6, 3, 8, 8)}
    a, b = calibration_feeds(g, stacked, 0), calibration_feeds(g, flat, 4)
    assert len(a) == 6 and len(b) == 4
    assert all(np.array_equal(x["x"], y["x"]) for x, y in zip(a, b))
    assert a[0]["x"].shape == (1, 3, 8, 8)


def test_qdq_form_before_fold() -> None:
    """What the pass writes: Q/DQ after the input and each quantized value (max_pool and
    reshape sit between DQ and Q of one parameter set), DQ'd integer weights and biases."""
    q, _ = quantize(small_net())
    assert [(n.op, n.loc) for n in q.nodes if n.op not in ("quantize", "dequantize")] == [
        ("conv", "conv1"),
        ("relu", "relu1"),
        ("max_pool", "pool1"),
        ("conv", "conv2"),
        ("relu", "relu2"),
        ("reshape", "flat"),
        ("matmul", "fc"),
        ("add", "fc_bias"),
    ]
    ops = [n.op for n in q.nodes]
    assert ops.count("quantize") == 6  # x, relu1, pool1, relu2, flat, fc_bias
    assert ops.count("dequantize") == 6 + 6  # and 3 weights + 3 biases
    params = {
        n.loc: (n.attrs["scale"], n.attrs["zero_point"]) for n in q.nodes if n.op == "quantize"
    }
    assert params["relu1"] == params["pool1"] and params["relu2"] == params["flat"]
    assert params["relu1"] != params["relu2"]
    assert q.outputs == small_net().outputs
