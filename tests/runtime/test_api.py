"""The Python API end to end on hand-built graphs: compile, run, save, load, input checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelc
from modelc.errors import InputError, TargetError
from modelc.ir import GraphBuilder, TensorType
from modelc.ir.dtypes import f32


def _graph():
    b = GraphBuilder("toy")
    x = b.add_input("x", TensorType((2, 8), f32))
    w = b.add_constant(np.linspace(-1, 1, 8, dtype=np.float32), "w")
    y = b.add("relu", b.add("mul", x, w))
    r = b.add("reshape", y, shape=(16,))
    b.set_outputs([b.add("sigmoid", y), r, x])
    return b.build()


@pytest.fixture(scope="module")
def lib():
    return modelc.compile(_graph(), target="cpu")


def test_run_matches_interpreter(lib) -> None:
    from modelc.ir.interpreter import run_graph

    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    got = lib.run({"x": x})
    want = run_graph(_graph(), {"x": x})
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6)
    sig, r, xc = lib(x)
    np.testing.assert_array_equal(xc, x)
    assert r.shape == (16,)


def test_manifest_fields(lib) -> None:
    m = json.loads((lib.path / "manifest.json").read_text())
    for key in (
        "target",
        "pipeline",
        "inputs",
        "outputs",
        "kernels",
        "workspace_bytes",
        "weights_bytes",
        "passes",
    ):
        assert key in m
    assert m["target"] == "cpu"
    assert m["inputs"] == [{"name": "x", "shape": [2, 8], "dtype": "f32"}]
    assert all({"name", "seconds"} <= set(p) for p in m["passes"])
    for f in ("model.h", "model.c", "weights.bin", "Makefile", "libmodel.so", "model.ir"):
        assert (lib.path / f).exists(), f


def test_save_load_and_make(lib, tmp_path) -> None:
    import shutil
    import subprocess

    out = lib.save(tmp_path / "m")
    (out / "libmodel.so").unlink()
    subprocess.run(["make", "-s", "-C", str(out)], check=True)
    again = modelc.load(out)
    x = np.ones((2, 8), np.float32)
    np.testing.assert_array_equal(again.run({"x": x})["sigmoid"], lib.run({"x": x})["sigmoid"])
    # loading a folder whose library is gone rebuilds it
    (out / "libmodel.so").unlink()
    np.testing.assert_array_equal(modelc.load(out)(x)[0], lib(x)[0])
    shutil.rmtree(out)


@pytest.mark.parametrize(
    "feeds, message",
    [
        ({"x": np.ones((2, 8), np.float64)}, "dtype float64 given"),
        ({"x": np.ones((3, 8), np.float32)}, r"shape \(3, 8\) given"),
        ({}, "missing input"),
        ({"x": np.ones((2, 8), np.float32), "z": np.ones(1)}, "unknown input"),
    ],
)
def test_bad_inputs(lib, feeds, message) -> None:
    with pytest.raises(InputError, match=message):
        lib.run(feeds)


def test_unknown_target() -> None:
    with pytest.raises(TargetError, match="available targets: cpu"):
        modelc.compile(_graph(), target="tpu")
