"""The error paths of the ConvTranspose, Resize (linear / cubic), TopK and Einsum converters: each
names the node and says what is wrong; and the shape of what Einsum lowers to."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_testing import f32, i64, make_model, rand

from modelc.errors import ShapeError, UnsupportedOpError
from modelc.frontend.onnx import load_onnx


def model(
    op: str,
    inputs: Mapping[str, np.ndarray],
    consts: Mapping[str, np.ndarray] | None = None,
    ins: list[str] | None = None,
    opset: int = 17,
    outs: int = 1,
    **attrs: object,
) -> onnx.ModelProto:
    names = ins if ins is not None else [*inputs, *(consts or {})]
    outputs = [f"y{k}" for k in range(outs)]
    node = helper.make_node(op, names, outputs, name="n7", **attrs)
    return make_model([node], inputs, outputs, consts=consts, opset=opset)


@pytest.mark.parametrize(
    ("m", "error", "match"),
    [
        (
            model(
                "ConvTranspose",
                {"x": rand(1, 2, 3, 3)},
                {"w": rand(2, 1, 3, 3)},
                strides=[3, 3],
                output_shape=[12, 9],
            ),
            ShapeError,
            "output_shape .* exceeds the natural output",
        ),
        (
            model(
                "ConvTranspose", {"x": rand(1, 2, 3, 3)}, {"w": rand(2, 1, 3, 3)}, output_shape=[5]
            ),
            ShapeError,
            "output_shape",
        ),
        (
            model(
                "ConvTranspose",
                {"x": rand(1, 2, 3, 3)},
                {"w": rand(2, 1, 3, 3)},
                kernel_shape=[2, 2],
            ),
            ShapeError,
            "kernel_shape",
        ),
        (
            model(
                "Resize",
                {"x": rand(1, 1, 4, 4)},
                {"s": f32(1, 1, 0.5, 0.5)},
                ins=["x", "", "s"],
                mode="linear",
                antialias=1,
                opset=18,
            ),
            UnsupportedOpError,
            "antialias",
        ),
        (
            model(
                "Resize", {"x": rand(1, 1, 4, 4)}, {"s": f32(1, 1, 2, 2)}, mode="cubic", opset=10
            ),
            UnsupportedOpError,
            "mode 'cubic'",
        ),
        (
            model("TopK", {"x": rand(2, 3)}, {"k": i64(4)}, outs=2),
            ShapeError,
            "k=4",
        ),
        (
            model("TopK", {"x": rand(2, 3), "xk": i64(2)}, outs=2),
            UnsupportedOpError,
            "k.* must be a constant",
        ),
        (
            model("Einsum", {"a": rand(2, 3), "b": rand(4, 5)}, equation="ij,jk->ik", opset=12),
            ShapeError,
            "label 'j' is 3 in one operand, 4",
        ),
        (
            model("Einsum", {"a": rand(2, 3)}, equation="ij,jk->ik", opset=12),
            ShapeError,
            "2 operand terms for 1 inputs",
        ),
        (
            model("Einsum", {"a": rand(2, 3)}, equation="ijk->i", opset=12),
            ShapeError,
            "names 3 dims of a rank-2 input",
        ),
        (
            model("Einsum", {"a": rand(2, 3)}, equation="ij->ix", opset=12),
            ShapeError,
            r"output labels \['x'\]",
        ),
        (
            model(
                "Einsum", {"a": rand(2, 1, 3), "b": rand(4, 3)}, equation="...j,...j->", opset=12
            ),
            UnsupportedOpError,
            "summed over while one operand broadcasts",
        ),
    ],
)
def test_errors(m: onnx.ModelProto, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as info:
        load_onnx(m)
    assert "'n7'" in str(info.value)


def _ops(m: onnx.ModelProto) -> list[str]:
    return [node.op for node in load_onnx(m).nodes]


@pytest.mark.parametrize(
    ("equation", "shapes", "ops"),
    [
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], ["matmul"]),
        ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)], ["transpose", "matmul"]),
        ("ij->i", [(3, 4)], ["reduce_sum"]),
        ("ij->ji", [(3, 4)], ["transpose"]),
        ("i,j->ij", [(3,), (4,)], ["reshape", "reshape", "mul"]),
    ],
)
def test_einsum_lowers_to_few_ops(equation: str, shapes: list[tuple], ops: list[str]) -> None:
    inputs = {f"x{k}": rand(*s) for k, s in enumerate(shapes)}
    assert _ops(model("Einsum", inputs, equation=equation, opset=12)) == ops
