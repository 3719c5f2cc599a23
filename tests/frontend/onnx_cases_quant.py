"""One-node cases of the quantized converters (see test_onnx_ops.py, which runs them against
onnxruntime, bit-exact for integer outputs).

QLinearConv / QLinearMatMul requantize in float in onnxruntime and in fixed point in modelc;
these cases use multipliers x_scale * w_scale / y_scale in [0.5, 1), where TFLite's fixed point
rounds once and agrees with onnxruntime. The general case (up to 1 LSB apart) is measured in
test_onnx_quant.py.
"""

from __future__ import annotations

import numpy as np
from onnx_testing import Case, CaseTable, f32

CASES = CaseTable()
case = CASES.add
RNG = np.random.default_rng(7)


def ints(dtype: type, *shape: int, low: int | None = None, high: int | None = None) -> np.ndarray:
    info = np.iinfo(dtype)
    lo = info.min if low is None else low
    hi = info.max if high is None else high
    return RNG.integers(lo, hi + 1, shape).astype(dtype)


def floats(*shape: int, scale: float = 4.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def scalar(v: float | int, dtype: type) -> np.ndarray:
    return np.array(v, dtype=dtype)


# x / scale lands on halves (ties go to even), and far outside the range (saturation).
TIES = f32(0.0, 0.05, 0.15, -0.05, -0.25, 0.35, 100.0, -100.0, 1.26, -1.26, 0.1, 12.7)
S = scalar(0.1, np.float32)

# ---- QuantizeLinear ------------------------------------------------------------------------------

case(
    "QuantizeLinear-10-u8",
    Case("QuantizeLinear", {"x": TIES}, consts={"s": S, "z": scalar(128, np.uint8)}, opset=10),
)
case(
    "QuantizeLinear-10-i8",
    Case("QuantizeLinear", {"x": TIES}, consts={"s": S, "z": scalar(-3, np.int8)}, opset=10),
)
case("QuantizeLinear-13-no-zp", Case("QuantizeLinear", {"x": TIES}, consts={"s": S}, opset=13))
case(
    "QuantizeLinear-13-axis",
    Case(
        "QuantizeLinear",
        {"x": floats(2, 3, 4)},
        {"axis": 1},
        consts={"s": f32(0.02, 0.05, 0.1), "z": np.array([0, 5, -7], np.int8)},
        opset=13,
    ),
)
case(
    "QuantizeLinear-19-f16",
    Case(
        "QuantizeLinear",
        {"x": TIES.astype(np.float16)},
        consts={"s": S.astype(np.float16), "z": scalar(3, np.uint8)},
        opset=19,
    ),
)
for _dt in (np.int16, np.uint16):
    case(
        f"QuantizeLinear-21-{np.dtype(_dt).name}",
        Case(
            "QuantizeLinear",
            {"x": floats(3, 5, scale=4000.0)},
            consts={"s": S, "z": scalar(7, _dt)},
            opset=21,
        ),
    )
case(
    "QuantizeLinear-21-output_dtype",
    Case("QuantizeLinear", {"x": TIES}, {"output_dtype": 3}, consts={"s": S}, opset=21),  # int8
)

# ---- DequantizeLinear ----------------------------------------------------------------------------

case(
    "DequantizeLinear-10-u8",
    Case(
        "DequantizeLinear",
        {"x": ints(np.uint8, 3, 4)},
        consts={"s": S, "z": scalar(128, np.uint8)},
        opset=10,
    ),
)
case(
    "DequantizeLinear-13-axis",
    Case(
        "DequantizeLinear",
        {"x": ints(np.int8, 2, 3, 4)},
        {"axis": -2},
        consts={"s": f32(0.02, 0.05, 0.1), "z": np.array([0, 5, -7], np.int8)},
        opset=13,
    ),
)
case(
    "DequantizeLinear-13-i32",
    Case(
        "DequantizeLinear",
        {"x": ints(np.int32, 6, low=-(1 << 30), high=1 << 30)},
        consts={"s": S},
        opset=13,
    ),
)
case(
    "DequantizeLinear-19-f16",
    Case(
        "DequantizeLinear",
        {"x": ints(np.uint8, 5)},
        consts={"s": S.astype(np.float16), "z": scalar(9, np.uint8)},
        opset=19,
        atol=1e-3,
    ),
)
case(
    "DequantizeLinear-21-i16",
    Case(
        "DequantizeLinear",
        {"x": ints(np.int16, 2, 5)},
        consts={"s": S, "z": scalar(-300, np.int16)},
        opset=21,
    ),
)

# ---- integer compute -----------------------------------------------------------------------------

CONV_X = ints(np.uint8, 1, 4, 7, 6)
CONV_W = ints(np.int8, 6, 4, 3, 3)
case(
    "ConvInteger-10",
    Case(
        "ConvInteger",
        {"x": CONV_X},
        {"pads": [1, 0, 1, 2], "strides": [2, 1]},
        consts={
            "w": ints(np.uint8, 5, 4, 3, 3),
            "xz": scalar(131, np.uint8),
            "wz": scalar(12, np.uint8),
        },
        opset=10,
    ),
)
case(
    "QLinearConv-10",
    Case(
        "QLinearConv",
        {"x": CONV_X},
        {"pads": [1, 1, 1, 1], "group": 2},
        consts={
            "xs": scalar(0.05, np.float32),
            "xz": scalar(120, np.uint8),
            "w": ints(np.int8, 6, 2, 3, 3),
            "ws": RNG.uniform(0.02, 0.04, 6).astype(np.float32),
            "wz": np.zeros(6, np.int8),
            "ys": scalar(0.0023, np.float32),
            "yz": scalar(100, np.uint8),
            "b": ints(np.int32, 6, low=-5000, high=5000),
        },
        opset=10,
    ),
)
case(
    "MatMulInteger-10",
    Case(
        "MatMulInteger",
        {"x": ints(np.uint8, 2, 3, 7)},
        consts={"b": ints(np.uint8, 7, 5), "az": scalar(128, np.uint8), "bz": scalar(3, np.uint8)},
        opset=10,
    ),
)
for _opset, _dt in ((10, np.uint8), (21, np.int8)):
    _zero = 0 if _dt == np.int8 else 128
    case(
        f"QLinearMatMul-{_opset}",
        Case(
            "QLinearMatMul",
            {"x": ints(_dt, 3, 9)},
            consts={
                "as": scalar(0.05, np.float32),
                "az": scalar(_zero + 1, _dt),
                "b": ints(_dt, 9, 4),
                "bs": scalar(0.03, np.float32),
                "bz": scalar(_zero - 2, _dt),
                "ys": scalar(0.0021, np.float32),
                "yz": scalar(_zero + 5, _dt),
            },
            opset=_opset,
        ),
    )
