"""The `symmetric_uint8` activation scheme (Glow's SymmetricWithUnsigned): hand formulas for its
parameters, every calibration method keeping non-negative tensors unsigned, the QDQ parameters
the pass writes, and the cpu-int8 library bit-exact with the interpreter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_quantize import FOLD, calib, quantize, small_net

import modelc
from modelc.api import with_quant_config
from modelc.ir.interpreter import run_graph
from modelc.passes import quant_calibrate as C
from modelc.passes.registry import GRAPH, PassContext, parse_pipeline, run_pipeline
from modelc.targets.registry import get_target


def test_qparams_hand_formulas() -> None:
    # non-negative range: every level of the byte, zero point at the bottom
    s, zp = C.qparams(0.0, 5.1, 8, "symmetric_uint8", False)
    assert (s, zp) == (pytest.approx(5.1 / 255), -128)
    s, zp = C.qparams(0.5, 2.0, 8, "symmetric_uint8", False)  # widened to hold 0: [0, 2]
    assert (s, zp) == (pytest.approx(2.0 / 255), -128)
    # a signed range is plain symmetric
    assert C.qparams(-1.0, 3.0, 8, "symmetric_uint8", False) == C.qparams(
        -1.0, 3.0, 8, "symmetric", False
    )
    s, zp = C.qparams(0.0, 5.1, 8, "symmetric_uint8", True)
    assert (s, zp) == (2.0 ** math.ceil(math.log2(5.1 / 255)), -128)
    s, zp = C.qparams(0.0, 1.5, 4, "symmetric_uint8", False)
    assert (s, zp) == (pytest.approx(1.5 / 15), -8)
    assert C.qparams(0.0, 0.0, 8, "symmetric_uint8", False) == (1.0, -128)
    with pytest.raises(ValueError, match="scheme"):
        C.qparams(0.0, 1.0, 8, "unsigned", False)


def test_unsigned_range_round_trips_through_fake_quant() -> None:
    """0 and hi are exact levels; the step is hi / 255, half of symmetric's hi / 127."""
    s, zp = C.qparams(0.0, 2.55, 8, "symmetric_uint8", False)
    assert C.fake_quant(np.array([0.0]), s, zp, 8)[0] == 0.0
    assert C.fake_quant(np.array([2.55]), s, zp, 8)[0] == pytest.approx(2.55, rel=1e-6)
    x = np.linspace(0, 2.55, 1001)
    err_u = np.abs(C.fake_quant(x, s, zp, 8) - x).max()
    ss, zs = C.qparams(0.0, 2.55, 8, "symmetric", False)
    err_s = np.abs(C.fake_quant(x, ss, zs, 8) - x).max()
    assert err_u == pytest.approx(s / 2, rel=1e-3) and err_u < 0.51 * err_s


def test_methods_keep_non_negative_tensors_unsigned() -> None:
    v = np.abs(np.random.default_rng(2).standard_normal(5000))
    v[:3] = [20.0, 18.0, 15.0]  # a tail worth clipping
    lo, hi = float(v.min()), float(v.max())
    lo_p, t = C.percentile_range(v, 99.0, True)
    assert lo_p == 0.0 and t == pytest.approx(float(np.percentile(v, 99.0)))
    assert C.percentile_range(-v, 99.0, True)[0] == -C.percentile_range(-v, 99.0, True)[1]
    assert C.kl_range(v, 8, lo, hi)[0] == lo  # KL clips |x|: lo stays >= 0
    # mse searches the clip ratio with the unsigned parameters: brute force
    hist, edges = np.histogram(v, bins=C.HIST_BINS, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    errs = []
    for k in range(1, C.MSE_RATIOS + 1):
        r = k / C.MSE_RATIOS
        s = float(np.float32(r * hi / 255))
        q = np.clip(np.rint(centres / s) - 128, -128, 127)
        errs.append(float(np.sum(hist * (centres - (q + 128) * s) ** 2)))
    best = (int(np.argmin(errs)) + 1) / C.MSE_RATIOS
    got = C.mse_range(v, 8, lo, hi, "symmetric_uint8", False)
    assert got == pytest.approx((best * lo, best * hi))


def test_pass_writes_unsigned_parameters_after_relu() -> None:
    """relu outputs (and the max_pool / reshape sharing their parameters) get zero point -128
    and scale max / 255; the signed network input and the final add are symmetric."""
    q, ctx = quantize(small_net(), "quantize{scheme=symmetric_uint8}")
    params = {
        n.loc: (n.attrs["scale"][0], n.attrs["zero_point"][0])
        for n in q.nodes
        if n.op == "quantize"
    }
    layers = ctx.reports["quantize"]["layers"]
    for loc, layer in (("relu1", "conv1"), ("pool1", "conv1"), ("relu2", "conv2")):
        lo, hi = layers[layer]["activation_range"]
        assert lo >= 0 and params[loc] == (pytest.approx(hi / 255), -128)
    assert params[""][1] == 0 and params["fc_bias"][1] == 0  # x and the logits are signed


@pytest.mark.toolchain
def test_cpu_int8_library_is_bit_exact(tmp_path) -> None:
    g = small_net()
    data = calib(8)
    cfg = {"scheme": "symmetric_uint8", "method": "mse"}
    lib = modelc.compile(
        g, target="cpu-int8", calibration=data, quant_config=cfg, output_dir=tmp_path
    )
    passes = with_quant_config(parse_pipeline(get_target("cpu-int8").pipeline), cfg)
    graph_passes = [p for p in passes if p.produces == GRAPH]
    folded = run_pipeline(g, graph_passes, PassContext(calibration=data, verify=True))
    ops = [n.op for n in folded.nodes]
    assert ops.count("qconv") == 2 and ops.count("qmatmul") == 1
    for seed in range(3):
        x = calib(1, seed=20 + seed)["x"][0]
        want = run_graph(folded, {"x": x})[g.outputs[0]]
        assert np.array_equal(lib(x), want)
    float_out = run_graph(g, {"x": x})[g.outputs[0]]
    assert C.sqnr_db(float_out, lib(x)) > 20


def test_folds_with_fold_qdq() -> None:
    q, _ = quantize(small_net(), "quantize{scheme=symmetric_uint8,power_of_two=true}")
    folded = run_pipeline(q, parse_pipeline(FOLD), PassContext(verify=True))
    ops = [n.op for n in folded.nodes]
    assert ops.count("qconv") == 2 and ops.count("qmatmul") == 1 and "conv" not in ops
