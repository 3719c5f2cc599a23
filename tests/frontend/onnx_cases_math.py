"""One-node cases of the elementwise, activation, nn and pooling converters (see
test_onnx_ops.py, which runs them)."""

from __future__ import annotations

import numpy as np
from onnx_testing import Case, CaseTable, f32, i64, rand, scalar

CASES = CaseTable()
case = CASES.add

X4 = rand(2, 3, 5, 6)
POS = rand(3, 4, low=0.1, high=3.0)

# ---- elementwise ------------------------------------------------------------------------------

for _op, _opset, _x in [
    ("Relu", 9, rand(3, 4)),
    ("Relu", 14, rand(3, 4)),
    ("Sigmoid", 13, rand(3, 4)),
    ("Tanh", 9, rand(3, 4)),
    ("Exp", 13, rand(3, 4)),
    ("Log", 13, POS),
    ("Sqrt", 9, POS),
    ("Neg", 13, rand(3, 4)),
    ("Abs", 13, rand(3, 4)),
    ("Reciprocal", 13, POS),
    ("Floor", 13, rand(3, 4)),
    ("Ceil", 13, rand(3, 4)),
    ("Erf", 13, rand(3, 4)),
    ("Round", 11, f32(0.5, 1.5, 2.5, -0.5, -1.2, 3.7)),
    ("Sin", 9, rand(3, 4)),
    ("Cos", 9, rand(3, 4)),
    ("Softplus", 9, rand(3, 4)),
    ("HardSwish", 14, rand(3, 4, low=-5, high=5)),
    ("Softsign", 13, rand(3, 4)),
    ("Mish", 18, rand(3, 4)),
    ("Not", 9, np.array([True, False, True])),
    ("Relu", 9, rand(3, 4).astype(np.float64)),
]:
    case(f"{_op}-{_opset}-{_x.dtype}", Case(_op, {"x": _x}, opset=_opset))

for _op, _attrs in [
    ("LeakyRelu", {}),
    ("LeakyRelu", {"alpha": 0.3}),
    ("Elu", {"alpha": 0.7}),
    ("HardSigmoid", {}),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
    ("Selu", {}),
    ("Selu", {"alpha": 1.5, "gamma": 2.0}),
    ("Celu", {"alpha": 2.0}),
    ("ThresholdedRelu", {"alpha": 0.5}),
]:
    case(f"{_op}-{_attrs}", Case(_op, {"x": rand(3, 4)}, _attrs, opset=13))

case("Gelu-none", Case("Gelu", {"x": rand(3, 4)}, opset=20))
case("Gelu-tanh", Case("Gelu", {"x": rand(3, 4)}, {"approximate": "tanh"}, opset=20))
case("PRelu-channel", Case("PRelu", {"x": rand(2, 3, 4, 4)}, consts={"s": rand(3, 1, 1)}))
case("PRelu-input", Case("PRelu", {"x": rand(2, 3), "xs": rand(3)}, opset=9))

for _op in ["Add", "Sub", "Mul", "Div"]:
    case(f"{_op}-bcast", Case(_op, {"xa": rand(2, 3, 4), "xb": rand(3, 1)}, opset=9))
    case(f"{_op}-const", Case(_op, {"xa": rand(2, 3)}, consts={"c": rand(3)}, opset=14))
case(
    "Div-int",
    Case("Div", {"xa": np.array([7, -7, 9], np.int32), "xb": np.array([2, 2, -4], np.int32)}),
)
case("Pow-float", Case("Pow", {"xa": POS, "xb": rand(3, 4)}, opset=13))
case("Pow-int-exponent", Case("Pow", {"xa": rand(3, 4)}, consts={"e": i64(2)}, opset=15))
for _op in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]:
    _a = np.array([1, 2, 3, 4], np.int64)
    case(f"{_op}", Case(_op, {"xa": _a, "xb": np.array([2, 2, 2, 2], np.int64)}, opset=13))
case("Less-float-bcast", Case("Less", {"xa": rand(2, 3), "xb": rand(3)}, opset=9))
for _op in ["And", "Or", "Xor"]:
    _b = np.array([[True, False], [False, False]])
    case(_op, Case(_op, {"xa": _b, "xb": np.array([True, False])}))
case(
    "Where",
    Case("Where", {"xc": rand(3, 4) > 0, "xa": rand(3, 4), "xb": rand(4)}, opset=9),
)
for _op, _opset in [("Sum", 9), ("Max", 9), ("Min", 13), ("Mean", 13)]:
    case(f"{_op}-3", Case(_op, {"xa": rand(2, 3), "xb": rand(3), "xc": rand(1, 3)}, opset=_opset))
case("Max-1", Case("Max", {"xa": rand(2, 3)}))
case("Sum-const", Case("Sum", {"xa": rand(2, 3)}, consts={"c": rand(3)}))

case("Clip-6-attrs", Case("Clip", {"x": rand(3, 4)}, {"min": -0.5, "max": 0.7}, opset=9))
case("Clip-6-min-only", Case("Clip", {"x": rand(3, 4)}, {"min": -0.5}, opset=9))
case("Clip-6-none", Case("Clip", {"x": rand(3, 4)}, opset=9))
case(
    "Clip-11-inputs",
    Case("Clip", {"x": rand(3, 4)}, consts={"lo": scalar(-0.5), "hi": scalar(1)}, opset=11),
)
case(
    "Clip-13-max-only",
    Case("Clip", {"x": rand(3, 4)}, consts={"hi": scalar(0.3)}, ins=["x", "", "hi"]),
)
case(
    "Clip-13-runtime-bound",
    Case("Clip", {"x": rand(3, 4), "xlo": scalar(-0.2)}, ins=["x", "xlo"], opset=13),
)
case(
    "Clip-13-int",
    Case("Clip", {"x": np.arange(-5, 5, dtype=np.int32)}, consts={"lo": np.int32(-2)}),
)

for _to, _x in [
    (6, rand(3, 4, low=-100, high=100)),  # float -> int32 truncates toward zero
    (10, rand(3, 4)),  # -> float16
    (1, np.arange(6, dtype=np.int64)),  # -> float
    (9, rand(3, 4)),  # -> bool
    (7, np.array([True, False])),  # bool -> int64
]:
    case(f"Cast-to{_to}-{_x.dtype}", Case("Cast", {"x": _x}, {"to": _to}, opset=13))
case("Cast-9", Case("Cast", {"x": rand(3)}, {"to": 11}, opset=9))
case("CastLike", Case("CastLike", {"x": rand(3)}, consts={"like": np.zeros(1, np.float16)}))
case("Identity", Case("Identity", {"x": rand(3)}, opset=9))

F16 = rand(2, 3, 4).astype(np.float16)
case("Relu-f16", Case("Relu", {"x": F16}, atol=1e-3))
case("Add-f16", Case("Add", {"xa": F16, "xb": F16[0]}, atol=1e-3))
case(
    "LayerNormalization-f16-stash",
    Case("LayerNormalization", {"x": F16}, consts={"s": np.ones(4, np.float16)}, atol=2e-3),
)
case("Clip-f16", Case("Clip", {"x": F16}, consts={"lo": scalar(-0.5, np.float16)}, atol=1e-3))

# ---- nn -------------------------------------------------------------------------------------

W = rand(4, 3, 3, 3, low=-0.5, high=0.5)
B = rand(4)
for _name, _attrs, _opset in [
    ("basic", {}, 9),
    ("pads-strides", {"pads": [1, 0, 2, 1], "strides": [2, 1]}, 11),
    ("dilations", {"dilations": [2, 1], "kernel_shape": [3, 3]}, 13),
    ("same-upper", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 17),
    ("same-lower", {"auto_pad": "SAME_LOWER", "strides": [2, 2]}, 17),
    ("valid", {"auto_pad": "VALID", "strides": [2, 2]}, 17),
]:
    case(f"Conv-{_name}", Case("Conv", {"x": X4}, _attrs, consts={"w": W, "b": B}, opset=_opset))
case("Conv-no-bias", Case("Conv", {"x": X4}, consts={"w": W}))
case(
    "Conv-depthwise",
    Case("Conv", {"x": X4}, {"group": 3}, consts={"w": rand(6, 1, 3, 3)}, opset=13),
)
case("Conv-1d", Case("Conv", {"x": rand(2, 3, 9)}, {"pads": [1, 1]}, consts={"w": rand(5, 3, 3)}))
case("Conv-3d", Case("Conv", {"x": rand(1, 2, 4, 5, 6)}, consts={"w": rand(3, 2, 2, 2, 2)}))
case("Conv-runtime-weight", Case("Conv", {"x": X4, "xw": W}))

for _name, _attrs, _opset in [
    ("plain", {}, 9),
    ("transA", {"transA": 1}, 9),
    ("transB-alpha-beta", {"transB": 1, "alpha": 0.5, "beta": 2.0}, 11),
    ("both", {"transA": 1, "transB": 1, "alpha": 1.5}, 13),
]:
    _a = rand(5, 4) if _attrs.get("transA") else rand(4, 5)
    _b = rand(6, 5) if _attrs.get("transB") else rand(5, 6)
    case(
        f"Gemm-{_name}",
        Case("Gemm", {"xa": _a}, _attrs, consts={"b": _b, "c": rand(6)}, opset=_opset),
    )
case(
    "Gemm-no-C", Case("Gemm", {"xa": rand(4, 5)}, {"beta": 3.0}, consts={"b": rand(5, 6)}, opset=11)
)
case(
    "Gemm-runtime-B-alpha",
    Case("Gemm", {"xa": rand(4, 5), "xb": rand(5, 6), "xc": rand(4, 1)}, {"alpha": 2.0}, opset=9),
)
case("MatMul-2d", Case("MatMul", {"xa": rand(4, 5)}, consts={"b": rand(5, 3)}, opset=9))
case("MatMul-batched", Case("MatMul", {"xa": rand(2, 4, 5), "xb": rand(5, 3)}))
case("MatMul-vec", Case("MatMul", {"xa": rand(5), "xb": rand(2, 5, 3)}))

_bn = {"s": rand(3), "b": rand(3), "m": rand(3), "v": rand(3, low=0.5, high=2)}
case(
    "BatchNormalization-9",
    Case("BatchNormalization", {"x": X4}, {"epsilon": 1e-3}, consts=_bn, opset=9),
)
case("BatchNormalization-15", Case("BatchNormalization", {"x": X4}, consts=_bn, opset=15))
case("BatchNormalization-2d", Case("BatchNormalization", {"x": rand(4, 3)}, consts=_bn))
case("LRN", Case("LRN", {"x": X4}, {"size": 3, "alpha": 1e-2, "beta": 0.6, "bias": 2.0}, opset=9))
case(
    "LayerNormalization",
    Case("LayerNormalization", {"x": rand(2, 3, 8)}, consts={"s": rand(8), "b": rand(8)}),
)
case(
    "LayerNormalization-axis1",
    Case(
        "LayerNormalization",
        {"x": rand(2, 3, 4)},
        {"axis": 1, "epsilon": 1e-3},
        consts={"s": rand(3, 4)},
    ),
)
case(
    "InstanceNormalization",
    Case("InstanceNormalization", {"x": X4}, consts={"s": rand(3), "b": rand(3)}, opset=9),
)

for _op in ["Softmax", "LogSoftmax"]:
    case(f"{_op}-9-default", Case(_op, {"x": rand(2, 3, 4)}, opset=9))  # coerced at axis 1
    case(f"{_op}-11-axis0", Case(_op, {"x": rand(2, 3, 4)}, {"axis": 0}, opset=11))
    case(f"{_op}-11-last", Case(_op, {"x": rand(2, 3, 4)}, {"axis": -1}, opset=11))
    case(f"{_op}-13-default", Case(_op, {"x": rand(2, 3, 4)}, opset=13))
    case(f"{_op}-13-axis1", Case(_op, {"x": rand(2, 3, 4)}, {"axis": 1}, opset=13))

case("Dropout-9", Case("Dropout", {"x": rand(3, 4)}, {"ratio": 0.3}, opset=9))
# onnxruntime's Dropout-10 gives an all-false mask in inference; the spec says all true
case("Dropout-10-mask", Case("Dropout", {"x": rand(3, 4)}, opset=10, outs=2, oracle="reference"))
case(
    "Dropout-13-inputs",
    Case("Dropout", {"x": rand(3, 4)}, consts={"r": scalar(0.2), "t": np.array(False)}, outs=2),
)

# ---- pools ----------------------------------------------------------------------------------

for _op in ["MaxPool", "AveragePool"]:
    for _name, _attrs, _opset in [
        ("basic", {"kernel_shape": [2, 2]}, 9),
        ("strides-pads", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 9),
        ("ceil", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, 10),
        (
            "ceil-pads",
            {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [1, 0, 0, 1], "ceil_mode": 1},
            11,
        ),
        ("same-upper", {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, 11),
        ("same-lower", {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"}, 11),
        ("valid", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}, 11),
    ]:
        case(f"{_op}-{_name}", Case(_op, {"x": X4}, _attrs, opset=_opset))
    case(f"{_op}-1d", Case(_op, {"x": rand(2, 3, 9)}, {"kernel_shape": [3], "strides": [2]}))
case(
    "AveragePool-count-pad",
    Case(
        "AveragePool",
        {"x": X4},
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    ),
)
case(
    "MaxPool-dilations",
    Case("MaxPool", {"x": X4}, {"kernel_shape": [2, 2], "dilations": [2, 2]}, opset=12),
)
case(
    "MaxPool-int8",
    Case(
        "MaxPool",
        {"x": rand(1, 2, 4, 4, low=-100, high=100).astype(np.int8)},
        {"kernel_shape": [2, 2]},
        opset=12,
    ),
)
case("GlobalAveragePool", Case("GlobalAveragePool", {"x": X4}, opset=9))
case("GlobalMaxPool", Case("GlobalMaxPool", {"x": rand(2, 3, 7)}, opset=9))
