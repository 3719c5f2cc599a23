"""The verifier accepts sound graphs and names the node and the problem in unsound ones."""

from __future__ import annotations

import numpy as np
import pytest
from irtest_ops import T, small_graph

from modelc.errors import VerifyError
from modelc.ir import Attrs, Constant, Graph, GraphBuilder, Node, TensorType, Value
from modelc.ir.dtypes import f16, f32, i8
from modelc.ir.graph import make_constant
from modelc.ir.parser import parse_graph
from modelc.ir.printer import print_graph
from modelc.ir.types import NM, QuantParams
from modelc.ir.verify import verify


def with_node(index: int, **changes: object) -> Graph:
    """`small_graph()` with fields of node `index` replaced."""
    g = small_graph()
    old = g.nodes[index]
    fields = {f: getattr(old, f) for f in ("op", "inputs", "outputs", "attrs", "loc")}
    fields.update(changes)
    nodes = list(g.nodes)
    nodes[index] = Node(**fields)  # type: ignore[arg-type]
    return g.replace(nodes=tuple(nodes))


def test_sound_graphs_pass() -> None:
    g = small_graph()
    verify(g)
    verify(parse_graph(print_graph(g)))
    b = GraphBuilder("built", fold=False)
    x = b.add_input("x", T)
    y = b.add("clip", b.add("add", x, b.add_constant(np.ones((1, 8), np.float32))), max=6.0)
    b.set_outputs([y, x])
    verify(b.build())
    verify(Graph("empty", (), (), ()))


def test_quant_and_encoding_are_not_compared() -> None:
    q = TensorType((2, 8), f32, QuantParams((0.1,), (0,)), NM(2, 4))
    verify(with_node(0, outputs=(Value("s0", q),)))


def test_duplicate_names() -> None:
    g = small_graph()
    with pytest.raises(VerifyError, match="value %x defined twice"):
        verify(g.replace(constants=(make_constant("x", np.zeros((2, 8), np.float32)),)))
    with pytest.raises(VerifyError, match="value %w defined twice"):
        verify(with_node(1, outputs=(Value("w", T),)))
    with pytest.raises(VerifyError, match="empty name"):
        verify(g.replace(inputs=(Value("", T),)))


def test_undefined_and_out_of_order_inputs() -> None:
    with pytest.raises(
        VerifyError, match=r"add node 'add0' \(node #0, defining %s0\): input 1 %nope"
    ):
        verify(with_node(0, inputs=("x", "nope")))
    g = small_graph()
    swapped = g.replace(nodes=(g.nodes[1], g.nodes[0], g.nodes[2]))
    with pytest.raises(VerifyError, match="test_scale node 'scale1'.*%s0 is not defined before"):
        verify(swapped)


def test_graph_outputs_must_be_defined() -> None:
    with pytest.raises(VerifyError, match="output %ghost is not defined"):
        verify(small_graph().replace(outputs=("v", "ghost")))


def test_unknown_op() -> None:
    with pytest.raises(
        VerifyError, match="frobnicate node 'add0'.*unknown graph-IR op 'frobnicate'"
    ):
        verify(with_node(0, op="frobnicate"))


def test_attributes() -> None:
    with pytest.raises(VerifyError, match="scale1.*unknown attributes \\['gain'\\]"):
        verify(with_node(1, attrs=Attrs(factor=2.0, bias=0.5, gain=1.0)))
    with pytest.raises(VerifyError, match="scale1.*missing attribute 'factor'"):
        verify(with_node(1, attrs=Attrs(bias=0.5)))
    with pytest.raises(VerifyError, match=r"scale1.*not normalized.*\{'bias': 0.0\}"):
        verify(with_node(1, attrs=Attrs(factor=2.0)))
    with pytest.raises(VerifyError, match="topk.*attribute k=3.0 is not of kind 'int'"):
        verify(with_node(2, attrs=Attrs(k=3.0, axis=-1)))
    with pytest.raises(VerifyError, match="attribute factor=True is not of kind 'float'"):
        verify(with_node(1, attrs=Attrs(factor=True, bias=0.5)))
    verify(with_node(1, attrs=Attrs(factor=2, bias=0)))  # an int is a valid float


def test_output_types_are_reinferred() -> None:
    with pytest.raises(VerifyError, match=r"output %s0 is typed f32\[2,9\] but add .* f32\[2,8\]"):
        verify(with_node(0, outputs=(Value("s0", TensorType((2, 9), f32)),)))
    with pytest.raises(VerifyError, match=r"output %s0 is typed f16\[2,8\]"):
        verify(with_node(0, outputs=(Value("s0", TensorType((2, 8), f16)),)))
    with pytest.raises(VerifyError, match="topk.*has 1 outputs, op test_topk makes 2"):
        verify(with_node(2, outputs=(Value("v", TensorType((2, 3), f32)),)))


def test_inference_failures_name_the_node() -> None:
    g = small_graph()
    bad_w = make_constant("w", np.zeros((3, 8), np.float32))
    with pytest.raises(VerifyError, match="add node 'add0'.*(broadcast|infer)"):
        verify(g.replace(constants=(bad_w,)))
    with pytest.raises(VerifyError, match="topk.*takes 1..2 inputs, got 3"):
        verify(with_node(2, inputs=("s1", "", "")))


def test_constant_data_must_match_type() -> None:
    data = np.zeros((2, 8), np.float32)
    data.flags.writeable = False
    cases = [
        (Constant(Value("w", TensorType((2, 8), f16)), data), "dtype float32.*dtype float16"),
        (Constant(Value("w", TensorType((16,), f32)), data), r"shape \[2, 8\].*shape \[16\]"),
        (Constant(Value("w", T), [[0.0] * 8] * 2), "holds a list"),  # type: ignore[arg-type]
    ]
    g = small_graph()
    for c, message in cases:
        with pytest.raises(VerifyError, match="constant %w.*" + message):
            verify(g.replace(constants=(c,)))


def test_quantized_constant_storage() -> None:
    t = TensorType((4,), i8, QuantParams((0.5,), (0,)))
    c = make_constant("q", np.array([1, 2, 3, 4], np.int8), t)
    verify(Graph("g", (), ("q",), (), (c,)))
    c64 = make_constant("q", np.array([1, 2, 3, 4], np.int64), t)
    with pytest.raises(VerifyError, match="dtype int64"):
        verify(Graph("g", (), ("q",), (), (c64,)))
