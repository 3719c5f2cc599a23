"""conv_transpose: compiled lowering vs numpy reference, reference vs onnxruntime, shape errors and
the shape of the generated loops."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from ort_oracle import run_node

from modelc.errors import ShapeError, UnsupportedTypeError
from modelc.ir import get_op
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import f32, i32
from modelc.ir.types import TensorType
from modelc.testing import check_lowering, lower_op

RNG = np.random.default_rng(0)
TOL = {"atol": 1e-4, "rtol": 1e-4}


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def attrs(
    s: Sequence[int], p: Sequence[int], d: Sequence[int], g: int = 1, op: Sequence[int] = ()
) -> dict:
    return {
        "strides": list(s),
        "pads": list(p),
        "dilations": list(d),
        "group": g,
        "output_padding": list(op) or [0] * len(s),
    }


# (x shape, w shape [C, M/group, *k], attrs): 1-D, 2-D and 3-D, every attribute off its default
CASES = {
    "3x3_s1_pad1": ((1, 3, 6, 6), (3, 4, 3, 3), attrs([1, 1], [1, 1, 1, 1], [1, 1])),
    "s2_pad1_outpad1": ((1, 3, 5, 5), (3, 4, 3, 3), attrs([2, 2], [1, 1, 1, 1], [1, 1], 1, [1, 1])),
    "s2_k4_unet": ((2, 4, 4, 4), (4, 2, 4, 4), attrs([2, 2], [1, 1, 1, 1], [1, 1])),
    "group2_dil_asym": ((2, 4, 4, 5), (4, 3, 3, 2), attrs([2, 3], [0, 1, 2, 0], [2, 1], 2, [1, 0])),
    "depthwise": ((1, 4, 5, 5), (4, 1, 3, 3), attrs([2, 2], [1, 1, 1, 1], [1, 1], 4)),
    "stride_gt_kernel": (
        (1, 2, 3, 3),
        (2, 2, 2, 2),
        attrs([4, 4], [0, 0, 0, 0], [1, 1], 1, [3, 3]),
    ),
    "pads_crop_all_taps": ((1, 1, 2, 2), (1, 2, 3, 3), attrs([1, 1], [2, 2, 1, 1], [1, 1])),
    "1x1": ((2, 5, 4, 3), (5, 3, 1, 1), attrs([1, 1], [0, 0, 0, 0], [1, 1])),
    "1x1_shifted": ((1, 2, 4, 4), (2, 3, 1, 1), attrs([1, 1], [1, 0, 0, 1], [1, 1], 1, [1, 1])),
    "1d": ((1, 2, 7), (2, 3, 4), attrs([3], [2, 1], [2], 1, [2])),
    "3d": ((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), attrs([1, 2, 2], [0, 1, 1, 1, 0, 0], [1, 1, 2])),
    # big enough for the parallel pragma to be emitted
    "parallel": ((1, 16, 12, 12), (16, 16, 4, 4), attrs([2, 2], [1, 1, 1, 1], [1, 1])),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lowering(case: str) -> None:
    xs, ws, a = CASES[case]
    bias = rand(ws[1] * a["group"]) if case != "1x1" else None
    check_lowering("conv_transpose", [rand(*xs), rand(*ws), bias], a, **TOL)


@pytest.mark.parametrize(
    "case", ["s2_pad1_outpad1", "group2_dil_asym", "stride_gt_kernel", "1d", "3d", "s2_k4_unet"]
)
def test_reference_matches_onnxruntime(case: str) -> None:
    xs, ws, a = CASES[case]
    x, w, b = rand(*xs), rand(*ws), rand(ws[1] * a["group"])
    theirs = run_node("ConvTranspose", [x, w, b], {**a, "kernel_shape": list(ws[2:])})[0]
    opdef = get_op("conv_transpose")
    ours = opdef.evaluate([x, w, b], opdef.check_attrs(Attrs(a)))[0]
    np.testing.assert_allclose(ours, theirs, **TOL)


def _walk(s: L.Stmt) -> list[L.Stmt]:
    out = [s]
    for child in ("body", "then", "else_"):
        c = getattr(s, child, None)
        if isinstance(c, L.Stmt):
            out += _walk(c)
    if isinstance(s, L.Seq):
        for c in s.stmts:
            out += _walk(c)
    return out


def test_kernel_clips_ranges_instead_of_branching() -> None:
    xs, ws, a = CASES["group2_dil_asym"]
    kernel, _ = lower_op("conv_transpose", [rand(*xs), rand(*ws)], a)
    assert not any(isinstance(s, L.If) for s in _walk(kernel.body))
    assert "Select" not in repr(kernel.body)
    macs = 2 * 4 * 3 * (4 * 5) * (3 * 2)
    assert dict(kernel.info)["macs"] == macs


@pytest.mark.parametrize(
    ("xs", "ws", "bs", "a", "match"),
    [
        ((1, 3, 4, 4), (4, 2, 3, 3), None, attrs([1, 1], [0] * 4, [1, 1]), "input channels"),
        ((1, 3, 4, 4), (3, 2, 3, 3), None, attrs([1, 1], [0] * 4, [1, 1], 2), "group"),
        ((1, 3, 4, 4), (3, 2, 3, 3), (3,), attrs([1, 1], [0] * 4, [1, 1]), "bias"),
        ((1, 3, 4, 4), (3, 2, 3), None, attrs([1, 1], [0] * 4, [1, 1]), "rank"),
        ((1, 3, 2, 2), (3, 2, 1, 1), None, attrs([1, 1], [1, 1, 1, 1], [1, 1]), "outputs"),
        ((1, 3, 4, 4), (3, 2, 3, 3), None, attrs([1], [0] * 4, [1, 1]), "strides"),
        ((1, 3, 4, 4), (3, 2, 3, 3), None, attrs([1, 1], [0] * 2, [1, 1]), "pads"),
        (
            (1, 3, 4, 4),
            (3, 2, 3, 3),
            None,
            attrs([1, 1], [0] * 4, [1, 1], 1, [-1, 0]),
            "output_pad",
        ),
    ],
)
def test_shape_errors(xs: tuple, ws: tuple, bs: tuple | None, a: dict, match: str) -> None:
    types = [TensorType(xs, f32), TensorType(ws, f32), None if bs is None else TensorType(bs, f32)]
    opdef = get_op("conv_transpose")
    with pytest.raises(ShapeError, match=match):
        opdef.infer_types(types, opdef.check_attrs(Attrs(a)))


def test_integer_input_is_rejected() -> None:
    types = [TensorType((1, 2, 3, 3), i32), TensorType((2, 2, 3, 3), i32)]
    opdef = get_op("conv_transpose")
    with pytest.raises(UnsupportedTypeError, match="float"):
        opdef.infer_types(types, opdef.check_attrs(Attrs(attrs([1, 1], [0] * 4, [1, 1]))))
