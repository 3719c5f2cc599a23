"""topk: compiled lowering vs numpy reference (ties, every axis, integer dtypes), reference vs
onnxruntime, shape errors."""

from __future__ import annotations

import numpy as np
import pytest

from modelc.errors import ShapeError, UnsupportedTypeError
from modelc.ir import get_op
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import boolean, f32
from modelc.ir.types import TensorType
from modelc.testing import check_lowering

RNG = np.random.default_rng(0)
# Few distinct values: plenty of ties, which is where orders differ.
TIES = RNG.integers(0, 4, (3, 7, 5)).astype(np.float32)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("largest", [True, False])
def test_lowering_with_ties(axis: int, largest: bool) -> None:
    for k in sorted({0, 1, 3, TIES.shape[axis]}):
        check_lowering("topk", [TIES], {"k": k, "axis": axis, "largest": largest})


@pytest.mark.parametrize("dtype", [np.int32, np.uint64, np.int8, np.float64])
def test_lowering_dtypes(dtype: type) -> None:
    x = RNG.integers(0, 6, (4, 9)).astype(dtype)
    check_lowering("topk", [x], {"k": 4, "axis": 1, "largest": True})
    check_lowering("topk", [x], {"k": 9, "axis": 1, "largest": False})


def _ort_topk(x: np.ndarray, k: int, axis: int, largest: int, sorted_: int) -> list[np.ndarray]:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    node = helper.make_node(
        "TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest, sorted=sorted_
    )
    elem = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", elem, x.shape)],
        [helper.make_empty_tensor_value_info("v"), helper.make_empty_tensor_value_info("i")],
        [numpy_helper.from_array(np.array([k], np.int64), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(sess.run(None, {"x": x}))


def _ours(x: np.ndarray, k: int, axis: int, largest: bool) -> tuple[np.ndarray, ...]:
    opdef = get_op("topk")
    return opdef.evaluate([x], opdef.check_attrs(Attrs(k=k, axis=axis, largest=largest)))


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("largest", [0, 1])
def test_reference_matches_onnxruntime_ties(axis: int, largest: int) -> None:
    for k in (1, 3):
        values, indices = _ours(TIES, k, axis, bool(largest))
        want_v, want_i = _ort_topk(TIES, k, axis, largest, 1)
        np.testing.assert_array_equal(values, want_v)
        np.testing.assert_array_equal(indices, want_i)


def test_unsorted_selects_the_same_elements() -> None:
    """sorted=0 leaves the order open (onnxruntime returns heap order); the set is the same."""
    x = RNG.permutation(200).astype(np.float32).reshape(2, 100)
    values, indices = _ours(x, 30, 1, True)
    want_v, want_i = _ort_topk(x, 30, 1, 1, 0)
    np.testing.assert_array_equal(np.sort(values, 1), np.sort(want_v, 1))
    np.testing.assert_array_equal(np.sort(indices, 1), np.sort(want_i, 1))


@pytest.mark.parametrize(
    ("shape", "dtype", "attrs", "error", "match"),
    [
        ((3, 4), f32, {"k": 5, "axis": 1}, ShapeError, "k=5"),
        ((3, 4), f32, {"k": 2, "axis": 2}, ShapeError, "axis"),
        ((3, 4), f32, {"k": -1, "axis": 0}, ShapeError, "k=-1"),
        ((3, 4), boolean, {"k": 1, "axis": 0}, UnsupportedTypeError, "bool"),
    ],
)
def test_errors(shape: tuple, dtype: object, attrs: dict, error: type, match: str) -> None:
    opdef = get_op("topk")
    with pytest.raises(error, match=match):
        opdef.infer_types([TensorType(shape, dtype)], opdef.check_attrs(Attrs(attrs)))
