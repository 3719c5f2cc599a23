"""matmul: compiled lowering vs numpy reference over numpy's shape rules (1-D promotion, batch
broadcasting), reference vs onnxruntime, and shape errors."""

from __future__ import annotations

import numpy as np
import pytest
from ort_oracle import run_node

from modelc.errors import ShapeError
from modelc.ir import get_op
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import f32
from modelc.ir.types import TensorType
from modelc.testing import check_lowering, lower_op

RNG = np.random.default_rng(0)
TOL = {"atol": 1e-4, "rtol": 1e-4}

SHAPES = [
    ((7,), (7,)),  # dot product -> scalar
    ((3, 7), (7,)),  # matrix-vector
    ((7,), (7, 4)),  # vector-matrix
    ((3, 7), (7, 4)),
    ((1, 1), (1, 1)),
    ((2, 3, 7), (7, 4)),  # batched a, shared b
    ((7,), (2, 7, 4)),  # vector against a batch
    ((2, 3, 7), (2, 7, 5)),  # same batch
    ((2, 1, 3, 7), (4, 7, 6)),  # both sides broadcast
    ((1, 3, 7), (2, 7, 5)),  # a broadcast over b's batch
    ((4, 3, 7), (1, 7, 1)),  # batched matrix-vector with a broadcast b
    ((64, 96), (96, 80)),  # big enough for the parallel pragma
]


def rand(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(("sa", "sb"), SHAPES, ids=[f"{a}@{b}" for a, b in SHAPES])
def test_matmul_lowering(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    (got,) = check_lowering("matmul", [rand(sa), rand(sb)], **TOL)
    assert got.shape == np.matmul(np.zeros(sa), np.zeros(sb)).shape


def test_matmul_int32_is_exact() -> None:
    a = RNG.integers(-50, 50, (3, 5, 6)).astype(np.int32)
    b = RNG.integers(-50, 50, (6, 4)).astype(np.int32)
    check_lowering("matmul", [a, b])


@pytest.mark.parametrize(("sa", "sb"), [((3, 7), (7, 4)), ((2, 1, 3, 7), (4, 7, 6)), ((7,), (7,))])
def test_matmul_reference_matches_onnxruntime(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    a, b = rand(sa), rand(sb)
    opdef = get_op("matmul")
    ours = opdef.evaluate([a, b], Attrs())[0]
    np.testing.assert_allclose(ours, run_node("MatMul", [a, b])[0], **TOL)


def test_matmul_row_loop_is_parallel_and_inner_loop_contiguous() -> None:
    kernel, _ = lower_op("matmul", [rand((64, 96)), rand((96, 80))])
    assert isinstance(kernel.body, L.For) and kernel.body.kind == "parallel"
    assert dict(kernel.body.annotations)["work"] == 64 * 96 * 80


@pytest.mark.parametrize(
    ("sa", "sb", "match"),
    [((3, 7), (6, 4), "inner dims"), ((2, 3, 7), (3, 7, 4), "broadcast"), ((), (3,), "rank")],
)
def test_matmul_shape_errors(sa: tuple, sb: tuple, match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        get_op("matmul").infer_types([TensorType(sa, f32), TensorType(sb, f32)], Attrs())
