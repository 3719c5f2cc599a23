"""The ONNX frontend's driver: model sources, what becomes an input or a constant, names, shape
subgraphs folding away, input_shapes, graph outputs, local functions, external data, the
converter registry, and the real architectures in the onnx wheel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_testing import check_model, make_model, rand, run_modelc, run_ort

from modelc.frontend.onnx import MAX_OPSET, MIN_OPSET, load_onnx
from modelc.frontend.onnx_ops.registry import lookup, supported_ops
from modelc.ir.interpreter import run_graph

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "onnx_frontend.md"


def relu_model(opset: int = 17) -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"], name="r")
    return make_model([node], {"x": rand(2, 3)}, ["y"], opset=opset)


# ---- sources ------------------------------------------------------------------------------------


def test_path_bytes_and_proto_give_the_same_graph(tmp_path: Path) -> None:
    model = relu_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    graphs = [
        load_onnx(path),
        load_onnx(str(path)),
        load_onnx(model.SerializeToString()),
        load_onnx(model),
    ]
    assert all(g == graphs[0] for g in graphs)
    assert [n.op for n in graphs[0].nodes] == ["relu"]


def test_external_data(tmp_path: Path) -> None:
    w = rand(4, 4)
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    model = make_model([node], {"x": rand(2, 4)}, ["y"], consts={"w": w})
    path = tmp_path / "sub" / "m.onnx"
    path.parent.mkdir()
    onnx.save_model(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        size_threshold=0,
        location="m.data",
    )
    assert (path.parent / "m.data").is_file()
    g = load_onnx(path)
    np.testing.assert_array_equal(g.constants[0].data, w)


# ---- inputs, initializers, names ----------------------------------------------------------------


def test_initializer_listed_as_input_is_a_constant() -> None:
    """Old-style graphs (IR version < 4) list every initializer as a graph input too."""
    model = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        {"x": rand(3), "w": rand(3)},
        ["y"],
        consts={"w": rand(3)},
    )
    g = load_onnx(model)
    assert [v.name for v in g.inputs] == ["x"]
    assert [c.name for c in g.constants] == ["w"]


def test_input_produced_by_a_node_is_not_an_input() -> None:
    """As in onnx's ReferenceEvaluator: the node's output wins over the graph input (and over an
    initializer of the same name)."""
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["w"],
            value=numpy_helper.from_array(np.array([0.5], np.float32)),
        ),
        helper.make_node("Mul", ["x", "w"], ["y"]),
    ]
    model = make_model(
        nodes,
        {"x": rand(2, 3), "w": rand(2, 3)},
        ["y"],
        consts={"shape": np.array([2, 3], np.int64), "w": rand(2, 3)},
    )
    g = load_onnx(model)
    assert [v.name for v in g.inputs] == ["x"]
    x = rand(2, 3)
    np.testing.assert_allclose(run_graph(g, {"x": x})["y"], x * 0.5)


def test_names_and_locs_follow_onnx() -> None:
    nodes = [
        helper.make_node("Gemm", ["in:0", "w", "c"], ["fc/out"], name="fc", transB=1),
        helper.make_node("Relu", ["fc/out"], ["1st"]),
    ]
    consts = {"w": rand(4, 3), "c": rand(4)}
    model = make_model(nodes, {"in:0": rand(2, 3)}, ["1st"], consts=consts)
    g = load_onnx(model)
    assert [v.name for v in g.inputs] == ["in:0"]
    assert g.outputs == ("1st",)
    producers = {o.name: n for n in g.nodes for o in n.outputs}
    assert producers["fc/out"].loc == "fc"
    assert producers["fc/out_matmul"].loc == "fc"  # intermediates: named after the output
    assert producers["1st"].loc == "Relu_1"  # unnamed nodes: op type + index


def test_shape_subgraph_folds_away() -> None:
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape: only the reshape remains."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    consts = {
        "i0": np.array(0, np.int64),
        "ax": np.array([0], np.int64),
        "minus1": np.array([-1], np.int64),
    }
    model = make_model(nodes, {"x": rand(2, 3, 4)}, ["y"], consts=consts, opset=13)
    g = check_model(model, {"x": rand(2, 3, 4)})
    assert [n.op for n in g.nodes] == ["reshape"]
    assert g.nodes[0].attrs["shape"] == (2, 12)
    assert g.constants == ()


def test_input_shapes_fix_symbolic_dims() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, None])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [x],
        [helper.make_empty_tensor_value_info("y")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    g = load_onnx(model, input_shapes={"x": (5, 3, 7)})
    assert g.inputs[0].type.shape == (5, 3, 7)


def test_graph_outputs_that_are_inputs_constants_or_repeated() -> None:
    nodes = [
        helper.make_node("Identity", ["x"], ["same"]),
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Identity", ["r"], ["r_again"]),
        helper.make_node("Identity", ["c"], ["c_out"]),
    ]
    model = make_model(
        nodes, {"x": rand(3)}, ["same", "r", "r_again", "c_out"], consts={"c": rand(3)}
    )
    g = load_onnx(model)
    assert g.outputs[0] == "x"  # an input: listed as is, the runtime copies it
    assert g.outputs[1] == "r"
    assert g.outputs[2] == "r_again"  # a second name for `r`: a copy
    assert g.outputs[3] == "c"  # a constant
    assert [n.op for n in g.nodes] == ["relu", "copy"]
    check_model(model, {"x": rand(3)})


def test_identity_output_takes_the_output_name() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["t"]), helper.make_node("Identity", ["t"], ["out"])]
    g = load_onnx(make_model(nodes, {"x": rand(3)}, ["out"]))
    assert g.outputs == ("out",)
    assert [o.name for n in g.nodes for o in n.outputs] == ["out"]


def test_sparse_constant_becomes_dense() -> None:
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([1.5, -2.0], np.float32)),
        numpy_helper.from_array(np.array([1, 5], np.int64)),
        [2, 3],
    )
    node = helper.make_node("Constant", [], ["y"], sparse_value=sparse)
    g = load_onnx(make_model([node], {}, ["y"], opset=13))
    np.testing.assert_array_equal(g.constants[0].data, [[0, 1.5, 0], [0, 0, -2.0]])


def test_sub_byte_and_bf16_initializers_keep_their_types() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    i4 = helper.make_tensor("q", TensorProto.INT4, [3], [-8, 0, 7])
    u4 = helper.make_tensor("u", TensorProto.UINT4, [2], [15, 1])
    bf = numpy_helper.from_array(np.array([1.5, -2], ml_dtypes.bfloat16), "bf")
    nodes = [helper.make_node("Identity", [t], [f"{t}_out"]) for t in ("q", "u", "bf")]
    graph = helper.make_graph(
        nodes,
        "g",
        [],
        [helper.make_empty_tensor_value_info(f"{t}_out") for t in ("q", "u", "bf")],
        [i4, u4, bf],
    )
    g = load_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    types = {c.name: (str(c.value.type.dtype), c.data.dtype, c.data.tolist()) for c in g.constants}
    assert types["q"] == ("i4", np.dtype(np.int8), [-8, 0, 7])
    assert types["u"] == ("u4", np.dtype(np.uint8), [15, 1])
    assert types["bf"][0] == "bf16" and types["bf"][2] == [1.5, -2.0]


def test_dropout_7_mask_has_the_input_type() -> None:
    """Dropout-7 (opset 9) types the mask like the input; nothing is dropped in inference.
    (onnxruntime returns zeros here, the ReferenceEvaluator a bool mask: the spec decides.)"""
    node = helper.make_node("Dropout", ["x"], ["y", "mask"])
    g = load_onnx(make_model([node], {"x": rand(3)}, ["y", "mask"], opset=9))
    mask = g.constant_map[g.outputs[1]].data
    assert mask.dtype == np.float32 and mask.tolist() == [1, 1, 1]


def test_dropout_mask_is_only_made_when_read() -> None:
    node = helper.make_node("Dropout", ["x"], ["y", "mask"])
    g = load_onnx(make_model([node, helper.make_node("Relu", ["y"], ["z"])], {"x": rand(3)}, ["z"]))
    assert [n.op for n in g.nodes] == ["relu"] and g.constants == ()


def test_local_functions_are_inlined() -> None:
    fn = helper.make_function(
        "custom",
        "Swish",
        ["a"],
        ["b"],
        [helper.make_node("Sigmoid", ["a"], ["s"]), helper.make_node("Mul", ["a", "s"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    node = helper.make_node("Swish", ["x"], ["y"], domain="custom")
    model = make_model(
        [node],
        {"x": rand(3, 4)},
        ["y"],
        functions=[fn],
        extra_opsets=[helper.make_opsetid("custom", 1)],
    )
    x = rand(3, 4)
    g = load_onnx(model)
    assert [n.op for n in g.nodes] == ["sigmoid", "mul"]
    np.testing.assert_allclose(
        run_modelc(g, model, {"x": x})[0], run_ort(model, {"x": x})[0], rtol=1e-6
    )


@pytest.mark.parametrize("opset", [MIN_OPSET, 13, MAX_OPSET])
def test_opsets_at_the_ends_of_the_range(opset: int) -> None:
    check_model(relu_model(opset), {"x": rand(2, 3)})


# ---- registry ---------------------------------------------------------------------------------


def test_registered_versions_are_real_onnx_versions() -> None:
    """Each converter's `since` is a version at which the ONNX op's schema changed."""
    for op, versions in supported_ops().items():
        for since in versions:
            schema = onnx.defs.get_schema(op, max_inclusive_version=since, domain="")
            assert schema.since_version == since, f"{op}-{since} is not an ONNX op version"


def test_every_supported_op_has_a_converter_at_every_opset_it_exists() -> None:
    for op in supported_ops():
        for opset in range(MIN_OPSET, MAX_OPSET + 1):
            try:
                onnx.defs.get_schema(op, max_inclusive_version=opset, domain="")
            except onnx.defs.SchemaError:
                continue  # the op does not exist yet at this opset
            assert lookup(op, opset) is not None, f"{op} at opset {opset}"


def test_lookup_picks_the_newest_version_not_after_the_opset() -> None:
    assert lookup("Softmax", 12).since == 1
    assert lookup("Softmax", 13).since == 13
    assert lookup("Squeeze", 28).since == 13
    assert lookup("Split", 17).since == 13 and lookup("Split", 18).since == 18
    assert lookup("Relu", 9) is not None and lookup("Gelu", 19) is None


def test_docs_list_every_supported_op() -> None:
    text = DOCS.read_text()
    missing = [op for op in supported_ops() if f"`{op}`" not in text]
    assert not missing, f"{DOCS} does not list {missing}"


# ---- the onnx wheel's real architectures ---------------------------------------------------------

LIGHT_MODELS = sorted(p.stem.removeprefix("light_") for p in LIGHT.glob("light_*.onnx"))
# ~250-550 MB of weights each: with random weights (below) they take a few seconds each.
BIG = {"bvlc_alexnet", "vgg19", "zfnet512"}


def dummy_input(shape: tuple[int, ...]) -> np.ndarray:
    """What onnx's test runner fed when it stored the expected outputs (generate_dummy_data)."""
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def test_light_models_are_present() -> None:
    assert len(LIGHT_MODELS) == 9, LIGHT_MODELS


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_matches_stored_output(name: str) -> None:
    g = load_onnx(LIGHT / f"light_{name}.onnx")
    feeds = {v.name: dummy_input(v.type.shape) for v in g.inputs}
    (got,) = run_graph(g, feeds).values()
    want = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def with_random_weights(model: onnx.ModelProto, rng: np.random.Generator) -> onnx.ModelProto:
    """The light models' weights are all 0.02 (ConstantOfShape), so every class scores the same
    and the stored outputs are uniform (a weak check). Random weights (He-scaled; positive 1-D
    parameters, so that variances stay valid) make the comparison with onnxruntime mean
    something; the logits (the Softmax input) become an extra output, since probabilities hide
    small errors."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    keep = []
    for node in g.node:
        if node.op_type != "ConstantOfShape":
            keep.append(node)
            continue
        shape = tuple(int(d) for d in inits[node.input[0]])
        if len(shape) >= 2:
            bound = np.sqrt(6.0 / np.prod(shape[1:]))
            w = rng.uniform(-bound, bound, shape)
        else:
            w = rng.uniform(0.5, 1.5, shape)
        g.initializer.append(numpy_helper.from_array(w.astype(np.float32), node.output[0]))
    del g.node[:]
    g.node.extend(keep)
    softmax = [n for n in g.node if n.op_type == "Softmax"]
    if softmax:
        g.output.append(helper.make_empty_tensor_value_info(softmax[0].input[0]))
    return model


@pytest.mark.parametrize(
    "name", [pytest.param(m, marks=pytest.mark.slow) if m in BIG else m for m in LIGHT_MODELS]
)
def test_light_model_with_random_weights_matches_onnxruntime(name: str) -> None:
    rng = np.random.default_rng(1)
    model = with_random_weights(onnx.load(LIGHT / f"light_{name}.onnx"), rng)
    graph = load_onnx(model)
    (x,) = [v for v in model.graph.input if v.name.endswith("data_0")]
    feeds = {x.name: rng.uniform(0, 1, graph.inputs[0].type.shape).astype(np.float32)}
    want = run_ort(model, feeds)
    got = run_modelc(graph, model, feeds)
    assert np.unique(want[-1]).size > 100  # the classes' logits differ: not a degenerate check
    for k, (g_, w_) in enumerate(zip(got, want)):
        # Deep random nets reach large magnitudes; float summation order then decides the
        # low digits, so the absolute tolerance scales with the output's magnitude.
        atol = 1e-4 * max(1.0, float(np.abs(w_).max()))
        np.testing.assert_allclose(g_, w_, atol=atol, rtol=1e-4, err_msg=f"{name} output {k}")
