"""One-node cases of the tensor, slicing, shape, reduction and resize converters (see
test_onnx_ops.py, which runs them)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from onnx_testing import I64_MAX, Case, CaseTable, f32, i64, rand, scalar

CASES = CaseTable()
case = CASES.add

X4 = rand(2, 3, 5, 6)
POS = rand(3, 4, low=0.1, high=3.0)

# ---- tensor ---------------------------------------------------------------------------------

case("Reshape-0-minus1", Case("Reshape", {"x": X4}, consts={"s": i64(0, -1, 6)}, opset=9))
case(
    "Reshape-allowzero",
    Case("Reshape", {"x": X4}, {"allowzero": 1}, consts={"s": i64(6, 30)}, opset=14),
)
case("Reshape-noop", Case("Reshape", {"x": X4}, consts={"s": i64(2, 3, 5, 6)}))
for _axis, _opset in [(0, 9), (1, 9), (3, 11), (4, 13), (-2, 13)]:
    case(f"Flatten-{_axis}", Case("Flatten", {"x": X4}, {"axis": _axis}, opset=_opset))
case("Transpose-default", Case("Transpose", {"x": X4}, opset=9))
case("Transpose-perm", Case("Transpose", {"x": X4}, {"perm": [0, 2, 3, 1]}, opset=13))
case("Concat-1", Case("Concat", {"xa": rand(2, 3), "xb": rand(2, 4)}, {"axis": 1}, opset=9))
case("Concat-neg-const", Case("Concat", {"xa": rand(2, 3)}, {"axis": -2}, consts={"c": rand(1, 3)}))
case("Squeeze-11-all", Case("Squeeze", {"x": rand(1, 3, 1, 2)}, opset=11))
case("Squeeze-11-axes", Case("Squeeze", {"x": rand(1, 3, 1, 2)}, {"axes": [-2]}, opset=11))
case("Squeeze-13-input", Case("Squeeze", {"x": rand(1, 3, 1, 2)}, consts={"a": i64(0, 2)}))
case("Squeeze-13-none", Case("Squeeze", {"x": rand(1, 3, 1, 2)}, opset=13))
case("Unsqueeze-9", Case("Unsqueeze", {"x": rand(3, 2)}, {"axes": [0, 3]}, opset=9))
case("Unsqueeze-11-neg", Case("Unsqueeze", {"x": rand(3, 2)}, {"axes": [-1, 1]}, opset=11))
case("Unsqueeze-13", Case("Unsqueeze", {"x": rand(3, 2)}, consts={"a": i64(1, -1)}))
case("Expand-bidirectional", Case("Expand", {"x": rand(3, 1)}, consts={"s": i64(2, 1, 4)}, opset=9))
case("Expand-noop", Case("Expand", {"x": rand(3, 4)}, consts={"s": i64(1, 1)}))
case("Tile", Case("Tile", {"x": rand(2, 3)}, consts={"r": i64(2, 3)}, opset=9))
case("DepthToSpace-DCR", Case("DepthToSpace", {"x": rand(1, 8, 2, 3)}, {"blocksize": 2}, opset=9))
case(
    "DepthToSpace-CRD",
    Case("DepthToSpace", {"x": rand(1, 8, 2, 3)}, {"blocksize": 2, "mode": "CRD"}, opset=13),
)
case("SpaceToDepth", Case("SpaceToDepth", {"x": rand(1, 2, 4, 6)}, {"blocksize": 2}))
# SpaceToDepth-28's CRD mode: onnxruntime implements SpaceToDepth up to opset 13 only
_crd = {"blocksize": 2, "mode": "CRD"}
case(
    "SpaceToDepth-28-CRD",
    Case("SpaceToDepth", {"x": rand(1, 2, 4, 6)}, _crd, opset=28, oracle="reference"),
)

# ---- slicing --------------------------------------------------------------------------------

case(
    "Slice-9-attrs",
    Case("Slice", {"x": X4}, {"starts": [1, -4], "ends": [100, -1], "axes": [1, 3]}, opset=9),
)
case(
    "Slice-9-no-axes",
    Case("Slice", {"x": rand(5, 6)}, {"starts": [1, 2], "ends": [3, 100]}, opset=9),
)
case(
    "Slice-10-inputs",
    Case(
        "Slice", {"x": X4}, consts={"s": i64(0, 1), "e": i64(I64_MAX, 5), "a": i64(-1, 2)}, opset=10
    ),
)
case(
    "Slice-13-neg-steps",
    Case(
        "Slice",
        {"x": X4},
        consts={
            "s": i64(-1, 4, 10),
            "e": i64(-I64_MAX, 0, -100),
            "a": i64(3, 2, 1),
            "st": i64(-2, -1, -1),
        },
    ),
)
case(
    "Slice-13-step2",
    Case("Slice", {"x": rand(10)}, consts={"s": i64(1), "e": i64(-1), "a": i64(0), "st": i64(3)}),
)
case("Slice-13-empty", Case("Slice", {"x": rand(4, 3)}, consts={"s": i64(3), "e": i64(1)}))
case("Split-9-equal", Case("Split", {"x": rand(6, 4)}, opset=9, outs=3))
case(
    "Split-11-sizes",
    Case("Split", {"x": rand(6, 5)}, {"axis": -1, "split": [1, 4]}, opset=11, outs=2),
)
case(
    "Split-13-input",
    Case("Split", {"x": rand(6, 5)}, {"axis": 0}, consts={"s": i64(2, 1, 3)}, outs=3),
)
case("Split-18-num-outputs", Case("Split", {"x": rand(7, 2)}, {"num_outputs": 3}, opset=18, outs=3))
case(
    "Gather-runtime",
    Case("Gather", {"x": rand(5, 4)}, {"axis": 1}, consts={"i": i64(3, -1, 0)}, opset=9),
)
case(
    "Gather-scalar",
    Case("Gather", {"x": rand(5, 4)}, consts={"i": np.array(-2, np.int64)}, opset=13),
)
case(
    "Gather-index-input",
    Case("Gather", {"x": rand(5, 4), "xi": np.array([[0, 4], [2, 2]], np.int32)}),
)
case("Gather-const", Case("Gather", {}, consts={"d": rand(5, 4), "i": i64(1, 2)}, opset=13))
for _mode in ["constant", "reflect", "edge"]:
    case(
        f"Pad-2-{_mode}",
        Case("Pad", {"x": rand(2, 3, 4)}, {"pads": [0, 1, 2, 0, 2, 1], "mode": _mode}, opset=9),
    )
case("Pad-2-value", Case("Pad", {"x": rand(3, 4)}, {"pads": [1, 1, 1, 1], "value": 2.5}, opset=9))
case(
    "Pad-11-input",
    Case("Pad", {"x": rand(3, 4)}, consts={"p": i64(1, 0, 0, 2), "v": scalar(-1)}, opset=11),
)
case(
    "Pad-13-reflect",
    Case("Pad", {"x": rand(3, 4)}, {"mode": "reflect"}, consts={"p": i64(2, 1, 1, 3)}, opset=13),
)
case("Pad-13-negative", Case("Pad", {"x": rand(4, 5)}, consts={"p": i64(-1, 2, 1, -2)}, opset=13))
case(
    "Pad-18-axes",
    Case(
        "Pad",
        {"x": rand(2, 3, 4)},
        consts={"p": i64(1, 2, 3, 0), "v": scalar(7), "a": i64(-1, 1)},
        opset=18,
    ),
)
case(
    "Pad-int",
    Case("Pad", {"x": np.arange(6, dtype=np.int64).reshape(2, 3)}, consts={"p": i64(1, 1, 0, 0)}),
)

# ---- shape ----------------------------------------------------------------------------------

case("Shape-9", Case("Shape", {"x": X4}, opset=9))
case("Shape-15-start-end", Case("Shape", {"x": X4}, {"start": 1, "end": -1}, opset=15))
case("Shape-15-clamp", Case("Shape", {"x": X4}, {"start": -10, "end": 10}, opset=15))
case("Size", Case("Size", {"x": X4}, opset=13))
case("ConstantOfShape-default", Case("ConstantOfShape", {}, consts={"s": i64(2, 3)}, opset=9))
case(
    "ConstantOfShape-int",
    Case(
        "ConstantOfShape",
        {},
        {"value": numpy_helper.from_array(np.array([7], np.int32))},
        consts={"s": i64(4)},
        opset=13,
    ),
)
case(
    "Constant-tensor",
    Case("Constant", {}, {"value": numpy_helper.from_array(rand(2, 3))}, opset=9),
)
case(
    "Constant-int4",
    Case(
        "Constant",
        {},
        {"value": helper.make_tensor("t", TensorProto.INT4, [3], [-8, 0, 7])},
        opset=21,
        oracle="reference",  # onnxruntime has no CPU kernel returning int4 graph outputs
    ),
)
case("Constant-value-float", Case("Constant", {}, {"value_float": 2.5}, opset=13))
case("Constant-value-floats", Case("Constant", {}, {"value_floats": [1.0, -2.0]}, opset=13))
case("Constant-value-int", Case("Constant", {}, {"value_int": 7}, opset=13))
case("Constant-value-ints", Case("Constant", {}, {"value_ints": [1, 2, 3]}, opset=13))
case(
    "Range-int",
    Case(
        "Range",
        {},
        consts={"a": scalar(10, np.int64), "b": scalar(-3, np.int64), "c": scalar(-4, np.int64)},
        opset=11,
    ),
)
case(
    "Range-float",
    Case("Range", {}, consts={"a": scalar(0.5), "b": scalar(3.2), "c": scalar(0.3)}, opset=11),
)

# ---- reductions -----------------------------------------------------------------------------

for _op in [
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
]:
    case(
        f"{_op}-11-attr",
        Case(_op, {"x": rand(2, 3, 4)}, {"axes": [-1, 0], "keepdims": 0}, opset=11),
    )
    case(f"{_op}-11-all", Case(_op, {"x": rand(2, 3, 4)}, opset=11))
    case(f"{_op}-18-input", Case(_op, {"x": rand(2, 3, 4)}, consts={"a": i64(1)}, opset=18))
    case(f"{_op}-18-noop", Case(_op, {"x": rand(2, 3, 4)}, {"noop_with_empty_axes": 1}, opset=18))
case("ReduceLogSum", Case("ReduceLogSum", {"x": POS}, {"axes": [1]}, opset=13))
case(
    "ReduceLogSum-18",
    Case("ReduceLogSum", {"x": POS}, {"keepdims": 0}, consts={"a": i64(0)}, opset=18),
)
case(
    "ReduceSum-13-input",
    Case("ReduceSum", {"x": rand(2, 3, 4)}, {"keepdims": 0}, consts={"a": i64(0, 2)}, opset=13),
)
case("ReduceSum-13-all", Case("ReduceSum", {"x": rand(2, 3, 4)}, opset=13))
case("ReduceMean-13-attr", Case("ReduceMean", {"x": rand(2, 3, 4)}, {"axes": [1]}, opset=13))
_bools = rand(3, 4) > 0
case("ReduceMax-20-bool", Case("ReduceMax", {"x": _bools}, consts={"a": i64(1)}, opset=20))
case("ReduceMin-20-bool", Case("ReduceMin", {"x": _bools}, {"keepdims": 0}, opset=20))
_ties = np.array([[1, 3, 3, 0], [2, 2, 1, 2]], np.float32)
for _op in ["ArgMax", "ArgMin"]:
    case(f"{_op}-9", Case(_op, {"x": rand(3, 4, 5)}, {"axis": 1}, opset=9))
    case(f"{_op}-13-nokeep", Case(_op, {"x": rand(3, 4, 5)}, {"axis": -1, "keepdims": 0}, opset=13))
    case(f"{_op}-12-last", Case(_op, {"x": _ties}, {"axis": 1, "select_last_index": 1}, opset=12))


# ---- resize ---------------------------------------------------------------------------------

X_SMALL = rand(1, 2, 5, 7)
case("Upsample-9-int", Case("Upsample", {"x": X_SMALL}, consts={"s": f32(1, 1, 2, 3)}, opset=9))
case(
    "Upsample-9-frac", Case("Upsample", {"x": X_SMALL}, consts={"s": f32(1, 1, 1.5, 2.5)}, opset=9)
)
case("Resize-10-down", Case("Resize", {"x": X_SMALL}, consts={"s": f32(1, 1, 0.6, 0.5)}, opset=10))
for _coord in [
    "half_pixel",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
]:
    for _nearest in ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]:
        for _scales in [(1, 1, 2, 2), (1, 1, 1.7, 0.6)]:
            case(
                f"Resize-13-{_coord}-{_nearest}-{_scales}",
                Case(
                    "Resize",
                    {"x": X_SMALL},
                    {"coordinate_transformation_mode": _coord, "nearest_mode": _nearest},
                    consts={"s": f32(*_scales)},
                    ins=["x", "", "s"],
                    opset=13,
                ),
            )
case(
    "Resize-11-sizes",
    Case("Resize", {"x": X_SMALL}, consts={"r": f32(), "s": f32(), "z": i64(1, 2, 9, 4)}, opset=11),
)
case(
    "Resize-18-axes-aspect",
    Case(
        "Resize",
        {"x": X_SMALL},
        {"axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"},
        consts={"z": i64(10, 21)},
        ins=["x", "", "", "z"],
        opset=18,
    ),
)
case(
    "Resize-19-half-pixel-symmetric",
    Case(
        "Resize",
        {"x": X_SMALL},
        {"coordinate_transformation_mode": "half_pixel_symmetric"},
        consts={"s": f32(1, 1, 1.6, 0.7)},
        ins=["x", "", "s"],
        opset=19,
    ),
)
