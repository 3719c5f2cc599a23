"""resize (linear / cubic): compiled lowering vs numpy reference, reference vs onnxruntime,
errors."""

from __future__ import annotations

import numpy as np
import pytest
from ort_oracle import run_node

from modelc.errors import ShapeError, UnsupportedOpError, UnsupportedTypeError
from modelc.ir import get_op
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import f32, i32
from modelc.ir.types import TensorType
from modelc.testing import check_lowering

RNG = np.random.default_rng(0)
F32 = np.float32
X = RNG.standard_normal((2, 3, 5, 7)).astype(F32)
COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]
# output sizes of X: up, down, mixed, down to one pixel
SIZES = [(2, 3, 9, 14), (2, 3, 3, 4), (2, 3, 8, 5), (2, 3, 1, 7)]


def attrs(sizes: tuple[int, ...], mode: str, coord: str, **kw: object) -> dict:
    scales = [float(F32(o) / F32(i)) for o, i in zip(sizes, X.shape)]
    return {
        "mode": mode,
        "sizes": list(sizes),
        "scales": scales,
        "coordinate_transformation_mode": coord,
        **kw,
    }


@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_lowering(mode: str, coord: str) -> None:
    for sizes in SIZES:
        check_lowering("resize", [X], attrs(sizes, mode, coord), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("a", [-0.5, -0.75])
def test_lowering_cubic_exclude_outside(a: float) -> None:
    for sizes in SIZES[:3]:
        kw = {"cubic_coeff_a": a, "exclude_outside": True}
        check_lowering("resize", [X], attrs(sizes, "cubic", "half_pixel", **kw), atol=1e-5)


def test_lowering_other_layouts() -> None:
    """Resized leading dims, a 3-D (trilinear) resize, f64, and a resize that resizes nothing."""
    x = RNG.standard_normal((4, 3, 5)).astype(F32)
    a = {"mode": "linear", "sizes": [7, 3, 2], "scales": [1.75, 1.0, 0.4]}
    check_lowering("resize", [x], a, atol=1e-5, rtol=1e-5)
    check_lowering("resize", [x.astype(np.float64)], {**a, "mode": "cubic"}, atol=1e-6)
    x5 = RNG.standard_normal((1, 2, 3, 4, 5)).astype(F32)
    a5 = {"mode": "linear", "sizes": [1, 2, 6, 2, 8], "scales": [1, 1, 2, 0.5, 1.6]}
    check_lowering("resize", [x5], a5, atol=1e-5, rtol=1e-5)
    same = {"mode": "linear", "sizes": list(x.shape), "scales": [1.0, 1.0, 1.0]}
    np.testing.assert_array_equal(check_lowering("resize", [x], same)[0], x)


def _reference(a: dict) -> np.ndarray:
    opdef = get_op("resize")
    return opdef.evaluate([X], opdef.check_attrs(Attrs(a)))[0]


@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_reference_matches_onnxruntime(mode: str, coord: str) -> None:
    for sizes in SIZES:
        for kw in [{}, {"exclude_outside": 1, "cubic_coeff_a": -0.5}] if mode == "cubic" else [{}]:
            ours = _reference(attrs(sizes, mode, coord, **kw))
            onnx_attrs = {"mode": mode, "coordinate_transformation_mode": coord, **kw}
            theirs = run_node("Resize", [X, None, None, np.array(sizes, np.int64)], onnx_attrs)
            np.testing.assert_allclose(ours, theirs[0], atol=1e-5, rtol=1e-5)


def test_reference_matches_onnxruntime_with_scales() -> None:
    """Given scales (not sizes), the coordinates divide by the scale, not by out / in."""
    scales = [1.0, 1.0, 1.7, 0.6]
    sizes = [int(np.floor(F32(d) * F32(s))) for d, s in zip(X.shape, scales)]
    for mode in ["linear", "cubic"]:
        ours = _reference({"mode": mode, "sizes": sizes, "scales": scales})
        theirs = run_node("Resize", [X, None, np.array(scales, F32)], {"mode": mode})[0]
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("dtype", "a", "error", "match"),
    [
        (f32, {"mode": "linear", "sizes": [2, 3], "scales": [1.0]}, ShapeError, "one entry"),
        (f32, {"mode": "linear", "sizes": [0, 3], "scales": [1.0, 1.0]}, ShapeError, ">= 1"),
        (f32, {"mode": "linear", "sizes": [2, 3], "scales": [0.0, 1.0]}, ShapeError, "positive"),
        (f32, {"mode": "nearest", "sizes": [2, 3], "scales": [1, 1]}, UnsupportedOpError, "mode"),
        (
            f32,
            {
                "mode": "linear",
                "sizes": [2, 3],
                "scales": [1, 1],
                "coordinate_transformation_mode": "tf_crop_and_resize",
            },
            UnsupportedOpError,
            "tf_crop_and_resize",
        ),
        (i32, {"mode": "linear", "sizes": [4, 3], "scales": [2, 1]}, UnsupportedTypeError, "float"),
    ],
)
def test_errors(dtype: object, a: dict, error: type, match: str) -> None:
    opdef = get_op("resize")
    with pytest.raises(error, match=match):
        opdef.infer_types([TensorType((2, 3), dtype)], opdef.check_attrs(Attrs(a)))
