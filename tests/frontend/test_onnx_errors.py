"""Every way a user can hand the ONNX frontend something it cannot compile gives a typed error
that names the file / node / tensor and says what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_testing import make_model, rand

from modelc.errors import (
    ModelLoadError,
    ShapeError,
    UnsupportedOpError,
    UnsupportedTypeError,
)
from modelc.frontend.onnx import load_onnx

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def one_node(op: str, opset: int = 17, **attrs: object) -> onnx.ModelProto:
    node = helper.make_node(op, ["x"], ["y"], name="n7", **attrs)
    return make_model([node], {"x": rand(2, 3)}, ["y"], opset=opset)


# ---- loading ----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelLoadError, match=f"{path}: no such file"):
        load_onnx(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is a directory"):
        load_onnx(tmp_path)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model, just some text\n")
    with pytest.raises(ModelLoadError, match=f"{path}: not an ONNX model"):
        load_onnx(path)


def test_truncated_file(tmp_path: Path) -> None:
    data = (LIGHT / "light_squeezenet.onnx").read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=str(path)):
        load_onnx(path)


def test_truncated_bytes() -> None:
    data = (LIGHT / "light_squeezenet.onnx").read_bytes()
    with pytest.raises(ModelLoadError, match="<bytes>"):
        load_onnx(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"", onnx.ModelProto().SerializeToString()])
def test_empty_model(data: bytes) -> None:
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        load_onnx(data)


def test_empty_graph() -> None:
    model = helper.make_model(
        helper.make_graph([], "empty", [], []), opset_imports=[helper.make_opsetid("", 17)]
    )
    with pytest.raises(ModelLoadError, match="the graph is empty"):
        load_onnx(model)


def test_not_a_model_object() -> None:
    with pytest.raises(ModelLoadError, match="pass a path"):
        load_onnx(42)  # type: ignore[arg-type]


def _external_model(tmp_path: Path) -> Path:
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    model = make_model([node], {"x": rand(2, 4)}, ["y"], consts={"w": rand(4, 4)})
    path = tmp_path / "m.onnx"
    onnx.save_model(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        size_threshold=0,
        location="weights.bin",
    )
    return path


def test_missing_external_data_file(tmp_path: Path) -> None:
    path = _external_model(tmp_path)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelLoadError, match=r"'w'.*weights\.bin.*does not exist"):
        load_onnx(path)


def test_external_data_without_a_path(tmp_path: Path) -> None:
    path = _external_model(tmp_path)
    proto = onnx.load(path, load_external_data=False)
    with pytest.raises(ModelLoadError, match=r"'w'.*weights\.bin.*from its path"):
        load_onnx(proto)


def test_undefined_value() -> None:
    node = helper.make_node("Add", ["x", "ghost"], ["y"], name="add1")
    with pytest.raises(ModelLoadError, match=r"node 'add1' \(op Add\) reads 'ghost'"):
        load_onnx(make_model([node], {"x": rand(3)}, ["y"]))


# ---- ops and opsets ---------------------------------------------------------------------------


def test_unsupported_op() -> None:
    with pytest.raises(
        UnsupportedOpError,
        match=r"node 'n7' \(op Foo, opset 17\): Foo is not supported by modelc .*docs/",
    ):
        load_onnx(one_node("Foo"))


def test_unsupported_domain() -> None:
    node = helper.make_node("FusedGemm", ["x"], ["y"], name="g", domain="com.microsoft")
    model = make_model(
        [node], {"x": rand(2, 3)}, ["y"], extra_opsets=[helper.make_opsetid("com.microsoft", 1)]
    )
    with pytest.raises(UnsupportedOpError, match=r"node 'g'.*domain 'com.microsoft'"):
        load_onnx(model)


def test_opset_too_new() -> None:
    model = one_node("Relu")
    model.opset_import[0].version = 99
    with pytest.raises(UnsupportedOpError, match="opset 99"):
        load_onnx(model)


def test_old_opset_is_upgraded() -> None:
    """Models older than opset 9 go through onnx's version converter first."""
    model = one_node("Relu")
    model.opset_import[0].version = 6
    graph = load_onnx(model)
    assert [n.op for n in graph.nodes] == ["relu"]


def test_op_newer_than_the_model_opset() -> None:
    with pytest.raises(UnsupportedOpError, match=r"\(op Gelu, opset 17\)"):
        load_onnx(one_node("Gelu"))


def test_input_that_must_be_constant() -> None:
    node = helper.make_node("Reshape", ["x", "xs"], ["y"], name="r")
    model = make_model([node], {"x": rand(2, 3), "xs": np.array([3, 2], np.int64)}, ["y"])
    with pytest.raises(
        UnsupportedOpError,
        match=r"node 'r' \(op Reshape, opset 17\): input 1 \(shape\) must be a constant",
    ):
        load_onnx(model)


def test_maxpool_indices() -> None:
    node = helper.make_node("MaxPool", ["x"], ["y", "idx"], name="mp", kernel_shape=[2, 2])
    model = make_model([node], {"x": rand(1, 1, 4, 4)}, ["y", "idx"])
    with pytest.raises(UnsupportedOpError, match=r"node 'mp' \(op MaxPool.*Indices"):
        load_onnx(model)


def test_batchnorm_training_mode() -> None:
    c = {k: rand(3) for k in "sbmv"}
    node = helper.make_node("BatchNormalization", ["x", *c], ["y"], name="bn", training_mode=1)
    model = make_model([node], {"x": rand(2, 3, 4, 4)}, ["y"], consts=c, opset=15)
    with pytest.raises(UnsupportedOpError, match=r"node 'bn'.*training_mode"):
        load_onnx(model)


def test_reading_an_output_modelc_does_not_make() -> None:
    c = {k: rand(3) for k in "sbmv"}
    bn = helper.make_node("BatchNormalization", ["x", *c], ["y", "mean_out"], name="bn")
    model = make_model([bn], {"x": rand(2, 3, 4, 4)}, ["y", "mean_out"], consts=c, opset=9)
    with pytest.raises(UnsupportedOpError, match=r"node 'bn'.*output 1"):
        load_onnx(model)


def test_dropout_training_mode() -> None:
    node = helper.make_node("Dropout", ["x", "", "t"], ["y"], name="d")
    model = make_model([node], {"x": rand(3)}, ["y"], consts={"t": np.array(True)})
    with pytest.raises(UnsupportedOpError, match=r"node 'd'.*training_mode"):
        load_onnx(model)


def test_pad_wrap_mode() -> None:
    node = helper.make_node("Pad", ["x", "p"], ["y"], name="p", mode="wrap")
    model = make_model(
        [node], {"x": rand(3, 4)}, ["y"], consts={"p": np.array([0, 1, 0, 1])}, opset=19
    )
    with pytest.raises(UnsupportedOpError, match=r"node 'p'.*'wrap'"):
        load_onnx(model)


def test_antialiased_resize() -> None:
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", mode="linear", antialias=1)
    model = make_model(
        [node], {"x": rand(1, 1, 4, 4)}, ["y"], consts={"s": np.array([1, 1, 2, 2], np.float32)}
    )
    with pytest.raises(UnsupportedOpError, match=r"node 'up' \(op Resize.*antialias=1"):
        load_onnx(model)


def test_bad_axis_names_the_node() -> None:
    with pytest.raises(ShapeError, match=r"node 'n7' \(op Softmax, opset 13\): axis 5"):
        load_onnx(one_node("Softmax", opset=13, axis=5))


def test_ir_shape_error_names_the_node() -> None:
    node = helper.make_node("Add", ["x", "z"], ["y"], name="plus")
    model = make_model([node], {"x": rand(2, 3), "z": rand(4)}, ["y"])
    with pytest.raises(ShapeError, match=r"node 'plus' \(op Add, opset 17\)"):
        load_onnx(model)


# ---- types --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "elem, name",
    [
        (TensorProto.FLOAT8E4M3FN, "FLOAT8E4M3FN"),
        (TensorProto.FLOAT8E5M2, "FLOAT8E5M2"),
        (TensorProto.FLOAT4E2M1, "FLOAT4E2M1"),
        (TensorProto.INT2, "INT2"),
        (TensorProto.STRING, "STRING"),
        (TensorProto.COMPLEX64, "COMPLEX64"),
    ],
)
def test_unsupported_input_type(elem: int, name: str) -> None:
    x = helper.make_tensor_value_info("img", elem, [2])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["img"], ["y"])],
        "g",
        [x],
        [helper.make_empty_tensor_value_info("y")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(UnsupportedTypeError, match=f"input 'img' has element type {name}"):
        load_onnx(model)


def test_unsupported_initializer_type() -> None:
    w = helper.make_tensor("w8", TensorProto.FLOAT8E4M3FN, [2], [1.0, 2.0])
    graph = helper.make_graph(
        [helper.make_node("Cast", ["w8"], ["y"], to=TensorProto.FLOAT)],
        "g",
        [],
        [helper.make_empty_tensor_value_info("y")],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(
        UnsupportedTypeError, match="initializer 'w8' has element type FLOAT8E4M3FN"
    ):
        load_onnx(model)


def test_cast_to_unsupported_type() -> None:
    with pytest.raises(
        UnsupportedTypeError,
        match=r"node 'n7' \(op Cast, opset 21\): the target type .* FLOAT8E5M2",
    ):
        load_onnx(one_node("Cast", opset=21, to=TensorProto.FLOAT8E5M2))


def test_string_constant() -> None:
    node = helper.make_node("Constant", [], ["y"], name="s", value_string="hi")
    model = make_model([node], {}, ["y"])
    with pytest.raises(UnsupportedTypeError, match=r"node 's'.*string"):
        load_onnx(model)


def test_constant_tensor_of_unsupported_type() -> None:
    t = helper.make_tensor("t", TensorProto.FLOAT8E4M3FN, [1], [1.0])
    node = helper.make_node("Constant", [], ["y"], name="c8", value=t)
    with pytest.raises(
        UnsupportedTypeError, match=r"node 'c8'.*attribute 'value' has element type FLOAT8E4M3FN"
    ):
        load_onnx(make_model([node], {}, ["y"], opset=21))


# ---- shapes -------------------------------------------------------------------------------------


def _symbolic_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 8])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["pixels"], ["y"])],
        "g",
        [x],
        [helper.make_empty_tensor_value_info("y")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_symbolic_dim_without_a_value() -> None:
    with pytest.raises(ShapeError) as info:
        load_onnx(_symbolic_model())
    msg = str(info.value)
    assert "input 'pixels'" in msg and "Nx3x8" in msg
    assert "--input-shape pixels=Nx3x8" in msg and "input_shapes={'pixels': (N, 3, 8)}" in msg


def test_unknown_rank_input() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [x],
        [helper.make_empty_tensor_value_info("y")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ShapeError, match="unknown rank.*--input-shape x="):
        load_onnx(model)


def test_input_shapes_names_an_unknown_input() -> None:
    with pytest.raises(ShapeError, match=r"'image', which is not an input.*inputs are 'pixels'"):
        load_onnx(_symbolic_model(), input_shapes={"image": (1, 3, 8)})


@pytest.mark.parametrize(
    "shape, match",
    [((1, 3), "rank 3"), ((1, 4, 8), "dim 1 is fixed to 3"), ((-1, 3, 8), "negative")],
)
def test_input_shapes_that_do_not_fit(shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        load_onnx(_symbolic_model(), input_shapes={"pixels": shape})


def test_initializer_is_not_an_input_for_input_shapes() -> None:
    model = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"])], {"x": rand(3)}, ["y"], consts={"w": rand(3)}
    )
    with pytest.raises(ShapeError, match="'w', which is not an input"):
        load_onnx(model, input_shapes={"w": (3,)})
