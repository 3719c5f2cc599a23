"""Smoke test of the Quantune benchmark's zoo (bench/quantune_zoo.py): the nets export and
import, and the data splits never leak training digits into calibration or test.

The benchmark itself (bench/quantune.py) takes an hour from an empty cache; these checks take
seconds and catch what would break it: an op the ONNX frontend cannot import, a split that
changes between runs (the cached tables would then describe other data).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "sklearn", reason="the zoo trains on scikit-learn's digits: pip install modelc[bench]"
)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import quantune_zoo as Z  # noqa: E402


def test_splits_are_disjoint_stratified_and_deterministic():
    _, labels = Z.digits()
    a, b = Z.split(labels), Z.split(labels)
    for part in ("train", "calib", "test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    train, calib, test = set(a.train), set(a.calib), set(a.test)
    assert not (train & calib) and not (train & test) and not (calib & test)
    assert len(train | calib | test) == len(labels)
    assert abs(len(a.test) - Z.N_TEST) <= 5 and abs(len(a.calib) - Z.N_CALIB) <= 5
    assert set(np.bincount(labels[a.test])) <= set(range(45, 56))  # about 50 per class


@pytest.mark.torch
def test_held_out_sets_are_views_of_held_out_digits_only():
    data = Z.make_data()
    images, labels = Z.digits()
    x = Z.upscale(images[:8])
    a, b = Z.augment(x, np.random.default_rng(5)), Z.augment(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)  # views are drawn from seeded generators only
    originals = Z.normalize(Z.upscale(images[data.splits.test]))
    n = len(data.splits.test)
    assert len(data.test_x) == n * Z.TEST_VIEWS
    np.testing.assert_array_equal(data.test_x[:n], originals)  # the first view is the digit
    np.testing.assert_array_equal(data.test_y, np.tile(labels[data.splits.test], Z.TEST_VIEWS))
    assert len(data.train_x) == len(data.splits.train)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["shufflenet", "googlenet"])
def test_untrained_net_exports_and_imports(tmp_path, name):
    import torch
    from quantune_nets import build

    import modelc
    from modelc.ir.interpreter import run_graph

    net = build(name).eval()
    path = Z.export(net, tmp_path / f"{name}.onnx")
    graph = modelc.api.import_model(path)
    assert [v.name for v in graph.inputs] == [Z.INPUT_NAME]
    assert tuple(graph.inputs[0].type.shape) == (1, 1, Z.IMAGE, Z.IMAGE)
    x = np.random.default_rng(0).standard_normal((1, 1, Z.IMAGE, Z.IMAGE)).astype(np.float32)
    (got,) = run_graph(graph, {Z.INPUT_NAME: x}).values()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
