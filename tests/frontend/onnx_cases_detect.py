"""One-node cases of the detection / segmentation / transformer converters: ConvTranspose, Resize
and Upsample in linear / cubic mode, TopK, Einsum, casts into bf16 / int4, and Mod, Sign, IsNaN,
IsInf, Trilu, CumSum, GatherElements, ScatterND (see test_onnx_ops.py, which runs them)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from onnx import TensorProto
from onnx_testing import Case, CaseTable, f32, i64, rand

CASES = CaseTable()
case = CASES.add

# ---- ConvTranspose --------------------------------------------------------------------------

X = rand(2, 4, 5, 6)
W = rand(4, 3, 3, 3, low=-0.5, high=0.5)
B = rand(3)
for _name, _attrs, _opset in [
    ("basic", {}, 9),
    (
        "strides-pads-outpad",
        {"strides": [2, 3], "pads": [1, 0, 2, 1], "output_padding": [1, 2]},
        11,
    ),
    ("dilations", {"dilations": [2, 1], "kernel_shape": [3, 3]}, 13),
    ("same-upper", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 17),
    ("same-lower", {"auto_pad": "SAME_LOWER", "strides": [2, 3]}, 17),
    ("valid", {"auto_pad": "VALID", "strides": [2, 2]}, 17),
    ("output-shape", {"strides": [2, 2], "output_shape": [12, 13]}, 17),
    ("output-shape-odd", {"strides": [3, 2], "output_shape": [13, 12]}, 22),
]:
    case(
        f"ConvTranspose-{_name}",
        Case("ConvTranspose", {"x": X}, _attrs, consts={"w": W, "b": B}, opset=_opset),
    )
case(
    "ConvTranspose-group-no-bias",
    Case(
        "ConvTranspose", {"x": X}, {"group": 2, "strides": [2, 2]}, consts={"w": rand(4, 2, 2, 2)}
    ),
)
case(
    "ConvTranspose-1d",
    Case("ConvTranspose", {"x": rand(1, 2, 7)}, {"strides": [3]}, consts={"w": rand(2, 3, 4)}),
)
case(
    "ConvTranspose-3d",
    Case(
        "ConvTranspose",
        {"x": rand(1, 2, 3, 4, 3)},
        {"strides": [1, 2, 2], "pads": [0, 1, 1, 0, 0, 1]},
        consts={"w": rand(2, 2, 2, 3, 2), "b": rand(2)},
    ),
)

# ---- Resize / Upsample: linear and cubic ------------------------------------------------------

XR = rand(1, 2, 5, 7)
case(
    "Upsample-9-linear",
    Case("Upsample", {"x": XR}, {"mode": "linear"}, consts={"s": f32(1, 1, 2, 1.5)}, opset=9),
)
case(
    "Resize-10-linear",
    Case("Resize", {"x": XR}, {"mode": "linear"}, consts={"s": f32(1, 1, 0.6, 1.7)}, opset=10),
)
case(
    "Resize-11-linear-sizes",
    Case(
        "Resize",
        {"x": XR},
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
        consts={"r": f32(), "s": f32(), "z": i64(1, 2, 9, 4)},
        opset=11,
    ),
)
case(
    "Resize-11-cubic",
    Case(
        "Resize",
        {"x": XR},
        {"mode": "cubic"},
        consts={"r": f32(), "s": f32(1, 1, 1.6, 0.7)},
        opset=11,
    ),
)
case(
    "Resize-11-cubic-exclude-outside",
    Case(
        "Resize",
        {"x": XR},
        {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1},
        consts={"r": f32(), "s": f32(1, 1, 0.8, 2.0)},
        opset=11,
    ),
)
for _coord in ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]:
    for _mode in ["linear", "cubic"]:
        for _scales in [(1, 1, 2, 2), (1, 1, 1.7, 0.6)]:
            case(
                f"Resize-13-{_mode}-{_coord}-{_scales}",
                Case(
                    "Resize",
                    {"x": XR},
                    {"mode": _mode, "coordinate_transformation_mode": _coord},
                    consts={"s": f32(*_scales)},
                    ins=["x", "", "s"],
                    opset=13,
                ),
            )
case(
    "Resize-13-linear-3d",
    Case(
        "Resize",
        {"x": rand(1, 2, 3, 4, 5)},
        {"mode": "linear"},
        consts={"s": f32(1, 1, 2, 0.5, 1.5)},
        ins=["x", "", "s"],
        opset=13,
    ),
)
case(
    "Resize-18-linear-axes-aspect",
    Case(
        "Resize",
        {"x": XR},
        {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": "not_smaller"},
        consts={"z": i64(10, 9)},
        ins=["x", "", "", "z"],
        opset=18,
    ),
)
case(
    "Resize-19-cubic-half-pixel-symmetric",
    Case(
        "Resize",
        {"x": XR},
        {"mode": "cubic", "coordinate_transformation_mode": "half_pixel_symmetric"},
        consts={"s": f32(1, 1, 1.6, 0.7)},
        ins=["x", "", "s"],
        opset=19,
    ),
)

# ---- TopK -----------------------------------------------------------------------------------

TIES = np.array([[3, 1, 3, 2, 1, 3], [0, 0, 5, 5, 2, 0]], np.float32)
case("TopK-1-attr", Case("TopK", {"x": rand(3, 5)}, {"k": 2}, opset=9, outs=2))
case(
    "TopK-10-input", Case("TopK", {"x": TIES}, {"axis": 1}, consts={"k": i64(4)}, opset=10, outs=2)
)
case(
    "TopK-11-smallest-axis0",
    Case("TopK", {"x": rand(5, 3)}, {"axis": -2, "largest": 0}, consts={"k": i64(3)}, outs=2),
)
case(
    "TopK-11-ties-smallest",
    Case("TopK", {"x": TIES}, {"largest": 0}, consts={"k": i64(5)}, opset=11, outs=2),
)
case(
    "TopK-11-int64",
    Case("TopK", {"x": np.array([[4, -1, 7, 7, 0]], np.int64)}, consts={"k": i64(3)}, outs=2),
)

# ---- Einsum ---------------------------------------------------------------------------------

for _eq, _shapes in [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("i,i->", [(5,), (5,)]),
    ("ij->ji", [(3, 4)]),
    ("ij->i", [(3, 4)]),
    ("...ij,...jk", [(2, 3, 4), (2, 4, 5)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
    ("bii->bi", [(2, 3, 3)]),
    ("ii", [(4, 4)]),
    ("ijk,ikl->ijl", [(2, 3, 4), (1, 4, 5)]),
]:
    _inputs = {f"x{k}": rand(*s) for k, s in enumerate(_shapes)}
    case(f"Einsum-{_eq}", Case("Einsum", _inputs, {"equation": _eq}, opset=12))
# onnxruntime requires every "..." to stand for the same number of dims
case(
    "Einsum-ellipsis-broadcast",
    Case(
        "Einsum",
        {"x0": rand(2, 1, 3, 4), "x1": rand(3, 4, 5)},
        {"equation": "...ij,...jk->...ik"},
        oracle="reference",
    ),
)

# ---- Cast into bf16 / int4 ------------------------------------------------------------------

# onnxruntime's python API has no bfloat16 arrays: the ONNX reference is the oracle
_bf = {"opset": 13, "oracle": "reference"}
case("Cast-to-bfloat16", Case("Cast", {"x": rand(3, 4)}, {"to": TensorProto.BFLOAT16}, **_bf))
_xb = rand(3, 4).astype(ml_dtypes.bfloat16)
case("Cast-from-bfloat16", Case("Cast", {"x": _xb}, {"to": TensorProto.FLOAT}, **_bf))
# onnxruntime has no int4 graph outputs (and rounds float -> int4 where the ONNX reference
# truncates, as every other float -> int cast does): the reference is the oracle
_x4 = np.array([-9, -8.5, -2.7, 0.5, 7.5, 8, 15, 16, 100], np.float32)
for _to in (TensorProto.INT4, TensorProto.UINT4):
    case(f"Cast-to-{_to}", Case("Cast", {"x": _x4}, {"to": _to}, opset=21, oracle="reference"))

# ---- Mod, predicates, Trilu, CumSum, GatherElements, ScatterND --------------------------------

_ia, _ib = np.array([-7, -4, 0, 3, 9], np.int32), np.array([3, -3, 2, -2, 4], np.int32)
case("Mod-int", Case("Mod", {"xa": _ia, "xb": _ib}, opset=10))
case("Mod-int-fmod", Case("Mod", {"xa": _ia, "xb": _ib}, {"fmod": 1}, opset=13))
case("Mod-float-fmod", Case("Mod", {"xa": rand(3, 4) * 5, "xb": rand(4) + 3}, {"fmod": 1}))
_special = np.array([-2.0, -0.0, 0.0, 3.5, np.nan, np.inf, -np.inf], np.float32)
case("Sign", Case("Sign", {"x": rand(3, 4)}, opset=9))
case("Sign-int", Case("Sign", {"x": np.array([-3, 0, 5], np.int64)}, opset=13))
case("IsNaN", Case("IsNaN", {"x": _special}, opset=9))
case("IsInf", Case("IsInf", {"x": _special}, opset=10))
case("IsInf-negative", Case("IsInf", {"x": _special}, {"detect_positive": 0}, opset=20))
for _upper in (0, 1):
    for _k in (-1, 0, 2):
        case(
            f"Trilu-{_upper}-{_k}",
            Case("Trilu", {"x": rand(2, 3, 4)}, {"upper": _upper}, consts={"k": i64(_k)}, opset=14),
        )
case("Trilu-default", Case("Trilu", {"x": rand(4, 3)}, opset=14))
for _excl in (0, 1):
    for _rev in (0, 1):
        case(
            f"CumSum-{_excl}-{_rev}",
            Case(
                "CumSum",
                {"x": rand(3, 4)},
                {"exclusive": _excl, "reverse": _rev},
                consts={"a": i64(-1)},
                opset=11,
            ),
        )
case(
    "GatherElements",
    Case(
        "GatherElements",
        {"x": rand(3, 4)},
        {"axis": -1},
        consts={"i": np.array([[0, -1], [3, 2], [1, 1]], np.int64)},
        opset=11,
    ),
)
_rows = np.array([[1], [-1]], np.int64)
case(
    "ScatterND",
    Case("ScatterND", {"x": rand(4, 3)}, consts={"i": _rows, "u": rand(2, 3)}, opset=11),
)
case(
    "ScatterND-18-max",
    Case(
        "ScatterND",
        {"x": rand(4, 3)},
        {"reduction": "max"},
        consts={"i": np.array([[1], [1]], np.int64), "u": rand(2, 3)},
        opset=18,
    ),
)
