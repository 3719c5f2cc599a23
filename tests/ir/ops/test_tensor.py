"""Tensor (data-movement) ops: compiled lowering vs numpy reference (bit-exact, every dtype),
reference vs onnxruntime, shape errors, quantization carry-over and kernel shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from modelc.errors import ShapeError, UnsupportedOpError
from modelc.ir import TensorType, get_op
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType, f32, i8, i64
from modelc.ir.types import QuantParams
from modelc.testing import check_lowering, lower_op

RNG = np.random.default_rng(0)
DTYPES = ["float32", "float16", "int64", "int32", "int8", "uint8", "bool"]


def rand(shape: Sequence[int], dtype: str = "float32") -> np.ndarray:
    """Random data without zeros (outputs start zeroed, so a missed store shows), except bool."""
    if dtype == "bool":
        return RNG.random(shape) > 0.5
    if np.dtype(dtype).kind == "f":
        return (RNG.standard_normal(shape) * 10).astype(dtype)
    return RNG.integers(1, 100, shape).astype(dtype)


def exact(op: str, inputs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> np.ndarray:
    """check_lowering with no tolerance: these ops only move bytes."""
    return check_lowering(op, inputs, attrs, atol=0, rtol=0)[0]


def infer(
    op: str, shapes: Sequence[Sequence[int]], attrs: Mapping[str, Any], dt: DType = f32
) -> tuple[TensorType, ...]:
    opdef = get_op(op)
    types = [TensorType(tuple(s), dt) for s in shapes]
    return opdef.infer_types(types, opdef.check_attrs(Attrs(attrs)))


# ---- lowering vs reference -------------------------------------------------------------------

CASES: list[tuple[str, list[tuple[int, ...]], dict[str, Any]]] = [
    ("reshape", [(2, 3, 4)], {"shape": (4, 6)}),
    ("reshape", [()], {"shape": (1, 1)}),
    ("reshape", [(0, 3)], {"shape": (3, 0, 5)}),
    ("transpose", [(2, 3, 4, 5)], {"perm": (0, 2, 3, 1)}),
    ("transpose", [(2, 3, 4, 5)], {"perm": (3, 1, 0, 2)}),
    ("transpose", [(1, 7, 1, 9)], {"perm": (3, 2, 1, 0)}),
    ("transpose", [(3, 37, 45)], {"perm": (0, 2, 1)}),  # tiled, partial tiles
    ("transpose", [(64, 48, 40)], {"perm": (0, 2, 1)}),  # tiled and parallel
    ("transpose", [()], {"perm": ()}),
    ("slice", [(5, 6, 7)], {"starts": (1, 0, 6), "ends": (4, 6, -1), "steps": (2, 1, -1)}),
    ("slice", [(5, 6, 7)], {"starts": (4, 5, 0), "ends": (-1, 0, 7), "steps": (-2, -3, 3)}),
    ("slice", [(5, 6)], {"starts": (3, 0), "ends": (3, 6), "steps": (1, 1)}),  # empty
    ("slice", [(4, 6)], {"starts": (0, 5), "ends": (4, 5), "steps": (1, -1)}),  # empty
    ("expand", [(3, 1)], {"shape": (2, 1, 4)}),
    ("expand", [(1, 4, 1, 2)], {"shape": (3, 1, 5, 1)}),
    ("expand", [(2, 3)], {"shape": (3,)}),
    ("expand", [()], {"shape": (2, 3)}),
    ("tile", [(2, 3)], {"repeats": (3, 2)}),
    ("tile", [(2, 1, 3)], {"repeats": (1, 4, 1)}),
    ("tile", [(2, 3)], {"repeats": (0, 2)}),
    ("concat", [(2, 3, 4), (2, 1, 4), (2, 5, 4)], {"axis": 1}),
    ("concat", [(3,), (0,), (2,)], {"axis": 0}),
    ("concat", [(2, 3), (2, 4)], {"axis": 1}),
    ("concat", [(2, 3)], {"axis": 0}),
    ("pad", [(2, 3, 4, 5)], {"pads": (0, 0, 1, 2, 0, 0, 2, 1), "value": 1.5}),
    ("pad", [(2, 3, 4, 5)], {"pads": (1, -1, 0, 3, -1, 2, 1, -2), "value": -2.0}),
    ("pad", [(3, 4)], {"pads": (-1, 2, -1, -3)}),  # crop only
    ("pad", [(2, 5, 6)], {"pads": (0, 2, 3, 0, 4, 5), "mode": "reflect"}),
    ("pad", [(2, 5, 6)], {"pads": (1, -2, 2, 1, 1, -3), "mode": "reflect"}),
    ("pad", [(2, 5, 6)], {"pads": (0, 3, 1, 2, 0, 7), "mode": "edge"}),
    ("pad", [(2, 5, 6)], {"pads": (1, 2, -3, 0, -4, 2), "mode": "edge"}),
    ("pad", [(64, 40, 30)], {"pads": (0, 2, 2, 0, 2, 2), "mode": "reflect"}),  # parallel
    ("pad", [()], {"pads": ()}),
    ("depth_to_space", [(2, 8, 3, 5)], {"blocksize": 2, "mode": "DCR"}),
    ("depth_to_space", [(2, 18, 2, 3)], {"blocksize": 3, "mode": "CRD"}),
    ("space_to_depth", [(2, 3, 4, 6)], {"blocksize": 2}),
    ("space_to_depth", [(1, 2, 9, 3)], {"blocksize": 3}),
]


@pytest.mark.parametrize(("op", "shapes", "attrs"), CASES, ids=lambda v: str(v))
def test_lowering_matches_reference(
    op: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any]
) -> None:
    exact(op, [rand(s) for s in shapes], attrs)


GATHER_CASES = [
    ((5, 4), (3,), 0, "int64"),
    ((2, 5, 3), (2, 2), 1, "int32"),
    ((2, 3, 7), (), 2, "int64"),  # scalar index drops the axis
    ((3, 4), (2, 0), 1, "int64"),  # empty indices
    ((200, 64), (300,), 0, "int64"),  # parallel
    ((6,), (4,), 0, "int8"),
]


@pytest.mark.parametrize(("shape", "ishape", "axis", "idt"), GATHER_CASES, ids=str)
def test_gather(shape: tuple, ishape: tuple, axis: int, idt: str) -> None:
    n = shape[axis]
    idx = RNG.integers(-n, n, ishape).astype(idt)  # negative indices wrap
    out = exact("gather", [rand(shape), idx], {"axis": axis})
    assert out.shape == shape[:axis] + ishape + shape[axis + 1 :]


DTYPE_CASES: list[tuple[str, list[tuple[int, ...]], dict[str, Any]]] = [
    ("reshape", [(2, 3, 4)], {"shape": (4, 6)}),
    ("transpose", [(3, 20, 18)], {"perm": (0, 2, 1)}),
    ("slice", [(5, 6)], {"starts": (4, 1), "ends": (-1, 6), "steps": (-2, 2)}),
    ("expand", [(3, 1)], {"shape": (2, 3, 4)}),
    ("tile", [(2, 3)], {"repeats": (2, 2)}),
    ("concat", [(2, 3), (2, 1)], {"axis": 1}),
    ("pad", [(3, 4)], {"pads": (1, -1, 2, 2), "value": 1.0}),
    ("pad", [(3, 4)], {"pads": (2, 1, 0, 3), "mode": "reflect"}),
    ("pad", [(3, 4)], {"pads": (2, 1, 0, 3), "mode": "edge"}),
    ("depth_to_space", [(1, 4, 2, 3)], {"blocksize": 2}),
    ("space_to_depth", [(1, 2, 4, 2)], {"blocksize": 2}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("op", "shapes", "attrs"), DTYPE_CASES, ids=lambda v: str(v))
def test_every_dtype(
    op: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any], dtype: str
) -> None:
    exact(op, [rand(s, dtype) for s in shapes], attrs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_every_dtype(dtype: str) -> None:
    exact("gather", [rand((4, 3), dtype), np.array([3, -4, 1], np.int64)], {"axis": 0})


def test_pad_value_is_cast_to_the_dtype() -> None:
    out = exact("pad", [rand((2,), "int32")], {"pads": (1, 1), "value": 7.9})
    assert out[0] == out[-1] == 7
    out = exact("pad", [np.zeros(2, bool)], {"pads": (1, 0), "value": 1.0})
    assert out.tolist() == [True, False, False]


def test_gather_clamps_out_of_range_indices_in_the_kernel() -> None:
    """ONNX leaves them undefined; the kernel must still never read outside x."""
    from modelc.runtime.kernel_runner import run_kernel

    x = np.arange(4, dtype=np.float32)
    kernel, _ = lower_op("gather", [x, np.zeros(3, np.int64)], {"axis": 0})
    (out,) = run_kernel(kernel, [x, np.array([9, -9, 1 << 40], np.int64)])
    assert out.tolist() == [3.0, 0.0, 3.0]
    with pytest.raises(ShapeError, match="out of range"):
        get_op("gather").evaluate([x, np.array([4])], Attrs(axis=0))


# ---- reference vs onnxruntime ------------------------------------------------------------------

INT64_MIN = -(1 << 63)


def _ort(
    onnx_op: str,
    inputs: Sequence[np.ndarray],
    consts: Sequence[np.ndarray] = (),
    **attrs: Any,
) -> np.ndarray:
    """Run one ONNX node (runtime inputs, then constant inputs) in onnxruntime."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper, numpy_helper

    names = [f"x{i}" for i in range(len(inputs))]
    cnames = [f"c{i}" for i in range(len(consts))]
    node = helper.make_node(onnx_op, names + cnames, ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(x.dtype), list(x.shape)
            )
            for n, x in zip(names, inputs)
        ],
        [
            helper.make_tensor_value_info(
                "y", helper.np_dtype_to_tensor_dtype(inputs[0].dtype), None
            )
        ],
        [numpy_helper.from_array(c, n) for n, c in zip(cnames, consts)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, dict(zip(names, inputs)))[0]


def _ref(op: str, inputs: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> np.ndarray:
    opdef = get_op(op)
    a = opdef.check_attrs(Attrs(attrs))
    return opdef.evaluate(list(inputs), a)[0]


def _same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def _i64(*v: int) -> np.ndarray:
    return np.array(v, np.int64)


@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_reference_matches_onnxruntime(dtype: str) -> None:
    x = rand((2, 6, 4, 3), dtype)
    _same(_ref("reshape", [x], {"shape": (12, 12)}), _ort("Reshape", [x], [_i64(12, 12)]))
    _same(_ref("transpose", [x], {"perm": (2, 0, 3, 1)}), _ort("Transpose", [x], perm=[2, 0, 3, 1]))
    y = rand((2, 1, 4, 3), dtype)
    _same(_ref("concat", [x, y, x], {"axis": 1}), _ort("Concat", [x, y, x], axis=1))
    _same(
        _ref("expand", [y], {"shape": (3, 1, 5, 1, 1)}), _ort("Expand", [y], [_i64(3, 1, 5, 1, 1)])
    )
    _same(_ref("tile", [y], {"repeats": (1, 3, 2, 1)}), _ort("Tile", [y], [_i64(1, 3, 2, 1)]))
    if dtype != "float32":
        return  # onnxruntime implements DepthToSpace / SpaceToDepth for floats only
    for mode in ("DCR", "CRD"):
        _same(
            _ref("depth_to_space", [x[:, :4]], {"blocksize": 2, "mode": mode}),
            _ort("DepthToSpace", [x[:, :4].copy()], blocksize=2, mode=mode),
        )
    z = rand((1, 2, 4, 6), dtype)
    _same(_ref("space_to_depth", [z], {"blocksize": 2}), _ort("SpaceToDepth", [z], blocksize=2))


@pytest.mark.parametrize("dtype", ["float32", "int32"])
@pytest.mark.parametrize(
    ("pads", "mode"),
    [
        ((0, 1, 2, 0, 3, 1), "constant"),
        ((1, -1, 2, -1, 2, -2), "constant"),
        ((0, 2, 3, 0, 1, 2), "reflect"),
        ((1, -2, 1, 0, 1, -2), "reflect"),  # reflect about the cropped edge
        ((0, 3, 1, 0, 5, 2), "edge"),
        ((1, 2, -3, 0, -3, 4), "edge"),
    ],
)
def test_pad_matches_onnxruntime(pads: tuple[int, ...], mode: str, dtype: str) -> None:
    x = rand((2, 5, 6), dtype)
    value = np.array(3, dtype)
    ours = _ref("pad", [x], {"pads": pads, "mode": mode, "value": 3.0})
    _same(ours, _ort("Pad", [x], [np.array(pads, np.int64), value], mode=mode))


def test_gather_matches_onnxruntime() -> None:
    x = rand((3, 5, 4))
    for idx, axis in [(_i64(0, -1, 2, -5), 1), (np.array([[2, -3], [0, 1]], np.int32), 0)]:
        _same(_ref("gather", [x, idx], {"axis": axis}), _ort("Gather", [x, idx], axis=axis))


@pytest.mark.parametrize(
    ("starts", "ends", "steps"),
    [
        ((1, 0, 6), (4, 6, -1), (2, 1, -1)),  # end -1 with a negative step: through index 0
        ((4, 5, 0), (-1, 0, 7), (-2, -3, 3)),
        ((4, 2, 3), (0, 2, 3), (-1, 1, 1)),
        ((0, 5, 6), (5, -1, 0), (1, -1, -4)),
    ],
)
def test_slice_matches_onnxruntime(starts: tuple, ends: tuple, steps: tuple) -> None:
    """Our normal form is ONNX's clamped form, except that end -1 with a negative step must be
    spelled INT64_MIN for ONNX (its -1 means 'the last element')."""
    x = rand((5, 6, 7))
    onnx_ends = [INT64_MIN if (e == -1 and s < 0) else e for e, s in zip(ends, steps)]
    ours = _ref("slice", [x], {"starts": starts, "ends": ends, "steps": steps})
    consts = [_i64(*starts), _i64(*onnx_ends), _i64(0, 1, 2), _i64(*steps)]
    _same(ours, _ort("Slice", [x], consts))


# ---- shape errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "shapes", "attrs", "match"),
    [
        ("reshape", [(2, 3)], {"shape": (4, 2)}, "6 elements"),
        ("reshape", [(2, 3)], {"shape": (-1, 3)}, "negative dim"),
        ("transpose", [(2, 3)], {"perm": (0, 0)}, "not a permutation"),
        ("concat", [(2, 3), (3, 3)], {"axis": 1}, "does not match"),
        ("concat", [(2, 3), (2, 3, 1)], {"axis": 0}, "does not match"),
        ("concat", [(2, 3), (2, 3)], {"axis": 2}, "out of range"),
        ("concat", [(), ()], {"axis": 0}, "rank >= 1"),
        ("gather", [(2, 3), (4,)], {"axis": 2}, "out of range"),
        ("slice", [(5,)], {"starts": (0,), "ends": (7,), "steps": (1,)}, "not clamped"),
        ("slice", [(5,)], {"starts": (4,), "ends": (-2,), "steps": (-1,)}, "not clamped"),
        ("slice", [(5,)], {"starts": (0,), "ends": (5,), "steps": (0,)}, "step of dim 0 is 0"),
        ("slice", [(5, 2)], {"starts": (0,), "ends": (5,), "steps": (1,)}, "one per dim"),
        ("expand", [(2, 3)], {"shape": (4, 3, 2)}, "do not broadcast"),
        ("tile", [(2, 3)], {"repeats": (2,)}, "one non-negative count per dim"),
        ("pad", [(2, 3)], {"pads": (1, 1)}, "4 entries"),
        ("pad", [(2, 3)], {"pads": (0, -2, 0, -2)}, "crop more"),
        ("pad", [(2, 3)], {"pads": (0, 3, 0, 0), "mode": "reflect"}, "at most 2"),
        ("pad", [(2, 3)], {"pads": (0, 2, 0, -2), "mode": "reflect"}, "at most 0"),
        ("pad", [(2, 0)], {"pads": (0, 1, 0, 0), "mode": "edge"}, "empty after cropping"),
        ("depth_to_space", [(1, 6, 2, 2)], {"blocksize": 2}, "divisible"),
        ("depth_to_space", [(6, 2, 2)], {"blocksize": 2}, "4-d"),
        ("space_to_depth", [(1, 4, 3, 4)], {"blocksize": 2}, "divisible"),
    ],
)
def test_shape_errors(op: str, shapes: list, attrs: dict, match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        infer(op, shapes, attrs)


def test_concat_dtype_mismatch_and_bad_indices() -> None:
    with pytest.raises(ShapeError, match="dtypes differ"):
        get_op("concat").infer_types([TensorType((2,), f32), TensorType((2,), i64)], Attrs(axis=0))
    with pytest.raises(ShapeError, match="integer"):
        get_op("gather").infer_types([TensorType((2,), f32), TensorType((2,), f32)], Attrs(axis=0))


def test_unsupported_modes() -> None:
    with pytest.raises(UnsupportedOpError, match="wrap"):
        infer("pad", [(2,)], {"pads": (1, 1), "mode": "wrap"})
    with pytest.raises(UnsupportedOpError, match="DCR"):
        infer("depth_to_space", [(1, 4, 2, 2)], {"blocksize": 2, "mode": "XYZ"})


# ---- quantization carry-over -------------------------------------------------------------------


def _q(axis: int | None = None, n: int = 1) -> QuantParams:
    return QuantParams(tuple(0.1 * (k + 1) for k in range(n)), (0,) * n, axis)


def test_quant_carries_through_data_movement() -> None:
    per_tensor = TensorType((2, 3, 4), i8, _q())
    (t,) = get_op("reshape").infer_types([per_tensor], Attrs(shape=(6, 4)))
    assert t.quant == per_tensor.quant

    per_channel = TensorType((2, 3, 4), i8, _q(axis=1, n=3))
    (t,) = get_op("transpose").infer_types([per_channel], Attrs(perm=(2, 0, 1)))
    assert t.shape == (4, 2, 3) and t.quant is not None and t.quant.axis == 2
    (t,) = get_op("reshape").infer_types([per_channel], Attrs(shape=(2, 3, 2, 2)))
    assert t.quant is not None and t.quant.axis == 1
    with pytest.raises(ShapeError, match="per channel"):
        get_op("reshape").infer_types([per_channel], Attrs(shape=(6, 4)))
    with pytest.raises(ShapeError, match="per channel"):
        get_op("concat").infer_types([per_channel, per_channel], Attrs(axis=1))
    with pytest.raises(ShapeError, match="requantize"):
        get_op("concat").infer_types([per_tensor, TensorType((2, 3, 4), i8)], Attrs(axis=0))


# ---- kernel shape ------------------------------------------------------------------------------


def _loops(s: L.Stmt) -> list[L.For]:
    if isinstance(s, L.For):
        return [s, *_loops(s.body)]
    if isinstance(s, L.Seq):
        return [f for x in s.stmts for f in _loops(x)]
    if isinstance(s, (L.Let, L.Allocate)):
        return _loops(s.body)
    return []


def test_reshape_is_a_view_with_a_flat_copy_lowering() -> None:
    assert get_op("reshape").has("view") and get_op("reshape").has("injective")
    kernel, _ = lower_op("reshape", [rand((2, 3, 4))], {"shape": (4, 6)})
    assert [f.extent for f in _loops(kernel.body)] == [L.Const(24)]


def test_contiguous_dims_merge() -> None:
    # NCHW -> NHWC is a 3-d transpose of (N, C, H*W).
    kernel, _ = lower_op("transpose", [rand((2, 3, 4, 5))], {"perm": (0, 2, 3, 1)})
    assert [f.extent for f in _loops(kernel.body)] == [L.Const(2), L.Const(20), L.Const(3)]
    # concat: one two-level nest per input, each inner loop one contiguous row.
    kernel, _ = lower_op("concat", [rand((2, 3, 4)), rand((2, 1, 4))], {"axis": 1})
    assert [f.extent for f in _loops(kernel.body)] == [L.Const(2), L.Const(12)] + [
        L.Const(2),
        L.Const(4),
    ]


def test_pad_writes_every_element_once() -> None:
    """Boxes partition the output: their volumes add up to its size."""
    for mode in ("constant", "reflect", "edge"):
        x = rand((3, 5, 6))
        kernel, (t,) = lower_op("pad", [x], {"pads": (1, 2, -1, 1, 2, 3), "mode": mode})
        assert isinstance(kernel.body, L.Seq)
        volumes = []
        for nest in kernel.body.stmts:
            n = 1
            for f in _loops(nest):
                assert isinstance(f.extent, L.Const)
                n *= f.extent.value
            volumes.append(n)
        assert sum(volumes) == t.size


def test_transpose_tiling_follows_the_schedule() -> None:
    from modelc.ir.loop import Schedule

    x = rand((3, 37, 45))
    for tile, tiled in [(None, True), (8, True), (0, False)]:
        schedule = Schedule() if tile is None else Schedule(tile=(tile,))
        check_lowering("transpose", [x], {"perm": (0, 2, 1)}, atol=0, rtol=0, schedule=schedule)
        kernel, _ = lower_op("transpose", [x], {"perm": (0, 2, 1)}, schedule)
        assert any(f.var.name.startswith("t") for f in _loops(kernel.body)) == tiled
    serial = Schedule(parallel=False, vectorize=False)
    check_lowering("transpose", [rand((64, 48, 40))], {"perm": (2, 0, 1)}, schedule=serial)


@pytest.mark.parametrize("seed", range(4))
def test_random_slices_and_pads(seed: int) -> None:
    """Random normal-form slices and pads (all modes, crops mixed with growth) on rank-3 data."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(2, 7, 3))
    starts, ends, steps = [], [], []
    for n in shape:
        step = int(rng.choice([-3, -2, -1, 1, 2, 3]))
        lo, hi = (0, n) if step > 0 else (-1, n - 1)
        s, e = (int(v) for v in rng.integers(lo, hi + 1, 2))
        starts.append(max(s, 0) if step < 0 else s)
        ends.append(e)
        steps.append(step)
    exact("slice", [rand(shape)], {"starts": starts, "ends": ends, "steps": steps})
    mode = ("constant", "reflect", "edge")[seed % 3]
    pads = []
    for n in shape:  # begins; the ends follow
        pads.append(int(rng.integers(-1, n - 1 if mode == "reflect" else n + 2)))
    ends_ = [int(rng.integers(-1, n - 2 if mode == "reflect" else n + 2)) for n in shape]
    exact("pad", [rand(shape)], {"pads": pads + ends_, "mode": mode, "value": 2.5})
