"""Test-only ops and graphs shared by the printer/parser, verifier and interpreter tests.

The ops are registered once per process under `test_*` names (re-importing is harmless), so
these tests do not depend on which real ops other modules have added yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError
from modelc.ir import Attrs, Graph, Node, TensorType, Value, all_ops, register_op
from modelc.ir.dtypes import f32, i64
from modelc.ir.graph import make_constant
from modelc.ir.opdef import AttrSpec, OpDef


def _infer_topk(types: Sequence[TensorType | None], attrs: Attrs) -> list[TensorType]:
    x = types[0]
    assert x is not None
    shape = x.shape[:-1] + (attrs["k"],)
    return [TensorType(shape, x.dtype), TensorType(shape, i64)]


def _ref_topk(arrays: Sequence[np.ndarray | None], attrs: Attrs) -> list[np.ndarray]:
    """Largest `k` along the last axis, descending; input 1 (optional) is ignored."""
    x = arrays[0]
    assert x is not None
    idx = np.argsort(-x, axis=-1, kind="stable")[..., : attrs["k"]]
    return [np.take_along_axis(x, idx, axis=-1), idx.astype(np.int64)]


def _infer_same(types: Sequence[TensorType | None], attrs: Attrs) -> list[TensorType]:
    x = types[0]
    assert x is not None
    return [TensorType(x.shape, x.dtype)]


def _ref_scale(arrays: Sequence[np.ndarray | None], attrs: Attrs) -> list[np.ndarray]:
    x = arrays[0]
    assert x is not None
    return [x * attrs["factor"] + attrs["bias"]]


def _ref_inplace(arrays: Sequence[np.ndarray | None], attrs: Attrs) -> list[np.ndarray]:
    """A buggy reference that writes into its input."""
    x = arrays[0]
    assert x is not None
    x += 1
    return [x]


def _ref_fail(arrays: Sequence[np.ndarray | None], attrs: Attrs) -> list[np.ndarray]:
    raise ShapeError("the reference refuses")


TEST_OPS = (
    OpDef(
        "test_topk",
        _infer_topk,
        _ref_topk,
        attrs={"k": AttrSpec("int"), "axis": AttrSpec("int", -1)},
        num_inputs=(1, 2),
        num_outputs=2,
    ),
    OpDef(
        "test_scale",
        _infer_same,
        _ref_scale,
        attrs={"factor": AttrSpec("float"), "bias": AttrSpec("float", 0.0)},
    ),
    OpDef("test_inplace", _infer_same, _ref_inplace),
    OpDef("test_fail", _infer_same, _ref_fail),
)


def register_test_ops() -> None:
    registered = all_ops()
    for op in TEST_OPS:
        if op.name not in registered:
            register_op(op)


register_test_ops()

T = TensorType((2, 8), f32)


def small_graph() -> Graph:
    """x -> test_scale -> test_topk(_, absent) -> (values, indices), plus a constant add."""
    w = make_constant("w", np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8))
    nodes = (
        Node("add", ("x", "w"), (Value("s0", T),), loc="add0"),
        Node("test_scale", ("s0",), (Value("s1", T),), Attrs(factor=2.0, bias=0.5), "scale1"),
        Node(
            "test_topk",
            ("s1", ""),
            (Value("v", TensorType((2, 3), f32)), Value("i", TensorType((2, 3), i64))),
            Attrs(k=3, axis=-1),
            "topk",
        ),
    )
    return Graph("small", (Value("x", T),), ("v", "i"), nodes, (w,))
