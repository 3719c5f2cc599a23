"""Elementwise ops: compiled lowering vs numpy reference, on same-shape and broadcast inputs."""

from __future__ import annotations

import numpy as np
import pytest

from modelc.ir import all_ops
from modelc.testing import check_lowering

RNG = np.random.default_rng(0)

UNARY = {
    name: op
    for name, op in all_ops().items()
    if "elementwise" in op.traits and op.num_inputs == (1, 1) and name not in ("cast", "not")
}
POSITIVE_ONLY = {"log", "sqrt"}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name: str) -> None:
    x = RNG.standard_normal((3, 17, 5)).astype(np.float32) * 3
    if name in POSITIVE_ONLY:
        x = np.abs(x) + 0.1
    attrs = {"min": -1.0, "max": 2.5} if name == "clip" else None
    check_lowering(name, [x], attrs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "max", "min", "pow"])
@pytest.mark.parametrize(
    "shapes", [((4, 8), (4, 8)), ((2, 3, 4, 5), (3, 1, 5)), ((1, 6), (5, 1)), ((7,), ())]
)
def test_binary_broadcast(name: str, shapes: tuple) -> None:
    a = RNG.standard_normal(shapes[0]).astype(np.float32)
    b = RNG.standard_normal(shapes[1]).astype(np.float32)
    if name == "pow":
        a = np.abs(a) + 0.5
    if name == "div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    check_lowering(name, [a, b])


@pytest.mark.parametrize("name", ["equal", "less", "greater", "less_equal", "greater_equal"])
def test_compare(name: str) -> None:
    a = RNG.integers(-3, 3, (4, 5)).astype(np.int64)
    b = RNG.integers(-3, 3, (5,)).astype(np.int64)
    check_lowering(name, [a, b])


def test_int_div_truncates_like_c() -> None:
    a = np.array([7, -7, 7, -7, 0], np.int32)
    b = np.array([2, 2, -2, -2, 3], np.int32)
    (out,) = check_lowering("div", [a, b])
    assert out.tolist() == [3, -3, -3, 3, 0]


def test_cast_and_where() -> None:
    from modelc.ir.dtypes import i32

    x = (RNG.standard_normal((10,)) * 10).astype(np.float32)
    check_lowering("cast", [x], {"to": i32})
    c = RNG.standard_normal((3, 4)) > 0
    check_lowering(
        "where",
        [
            c,
            RNG.standard_normal((3, 4)).astype(np.float32),
            RNG.standard_normal((4,)).astype(np.float32),
        ],
    )
