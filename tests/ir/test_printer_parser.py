"""The graph text form: `parse_graph(print_graph(g)) == g`, exact values, readable errors."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from irtest_ops import small_graph

from modelc.errors import ParseError
from modelc.ir import Attrs, Graph, Node, TensorType, Value
from modelc.ir import loop as L
from modelc.ir.dtypes import bf16, boolean, f16, f32, fixed, i4, i8, i64, u4
from modelc.ir.graph import make_constant
from modelc.ir.parser import parse_graph, parse_type
from modelc.ir.printer import format_type, print_graph, print_kernel
from modelc.ir.types import NM, BinaryCoded, QuantParams

RNG = np.random.default_rng(0)


def roundtrip(g: Graph) -> Graph:
    text = print_graph(g)
    back = parse_graph(text)
    assert back == g, text
    assert print_graph(back) == text
    return back


def one_node_graph(attrs: Attrs, *, op: str = "thing", name: str = "g") -> Graph:
    t = TensorType((2,), f32)
    node = Node(op, ("x",), (Value("y", t),), attrs)
    return Graph(name, (Value("x", t),), ("y",), (node,))


# ---- golden text -------------------------------------------------------------------------------

GOLDEN = """\
graph @small(%x: f32[2,8]) -> (%v, %i) {
  const %w: f32[2,8] = dense<[-1.0, -0.8666666746139526, -0.7333333492279053, \
-0.6000000238418579, -0.46666666865348816, -0.3333333432674408, -0.20000000298023224, \
-0.06666667014360428, 0.06666667014360428, 0.20000000298023224, 0.3333333432674408, \
0.46666666865348816, 0.6000000238418579, 0.7333333492279053, 0.8666666746139526, 1.0]>
  %s0: f32[2,8] = add(%x, %w) loc("add0")
  %s1: f32[2,8] = test_scale(%s0) {bias=0.5, factor=2.0} loc("scale1")
  %v, %i: f32[2,3], i64[2,3] = test_topk(%s1, _) {axis=-1, k=3} loc("topk")
  return %v, %i
}
"""


def test_golden_text() -> None:
    assert print_graph(small_graph()) == GOLDEN
    assert parse_graph(GOLDEN) == small_graph()


def test_comments_and_whitespace_are_ignored() -> None:
    text = """
    // a hand-written graph
    graph @small(%x: f32[ 2 , 8 ])->(%y){  // header
      %y: f32[2,8] = relu(%x)   // the only node
      return %y
    }
    // trailing comment"""
    g = parse_graph(text)
    assert g.nodes == (Node("relu", ("x",), (Value("y", TensorType((2, 8), f32)),)),)


# ---- attributes --------------------------------------------------------------------------------

ALL_KINDS = {
    "i": 3,
    "neg": -7,
    "big": 2**70,
    "f": 1.0,
    "tiny": 1e-05,
    "third": 1 / 3,
    "pinf": math.inf,
    "ninf": -math.inf,
    "s": 'say "hi"\n\tback\\slash, ünïcödé',
    "empty_s": "",
    "t": True,
    "fl": False,
    "dt": f32,
    "dt_fixed": fixed(16, 6),
    "dt_bf16": bf16,
    "none": None,
    "ints": (1, -2, 3),
    "floats": (0.5, -2.0, 1e30),
    "mixed": (1, 2.0, "a", False, None, i8),
    "nested": ((1, 2), (), ((3,),)),
    "empty": (),
    "weird key/0": 1,
}


def test_every_attribute_kind_roundtrips_with_its_python_type() -> None:
    g = roundtrip(one_node_graph(Attrs(ALL_KINDS)))
    got = g.nodes[0].attrs
    for k, v in ALL_KINDS.items():
        assert type(got[k]) is type(v), k
        assert got[k] == v, k
    assert type(got["mixed"][0]) is int and type(got["mixed"][1]) is float
    assert got["mixed"][3] is False


def test_float_attributes_print_unambiguously() -> None:
    text = print_graph(one_node_graph(Attrs(a=1.0, b=1, c=1e-05, d=True)))
    assert "{a=1.0, b=1, c=1e-05, d=true}" in text


def test_nan_attribute() -> None:
    g = parse_graph(print_graph(one_node_graph(Attrs(value=math.nan))))
    assert math.isnan(g.nodes[0].attrs["value"])


def test_no_attributes_prints_no_braces() -> None:
    assert "= thing(%x)\n" in print_graph(one_node_graph(Attrs()))


# ---- types -------------------------------------------------------------------------------------

TYPES = [
    TensorType((1, 3, 224, 224), f32),
    TensorType((), f32),
    TensorType((0, 3), i64),
    TensorType((4,), bf16),
    TensorType((4,), fixed(16, 6)),
    TensorType((4,), boolean),
    TensorType((1, 64), i8, QuantParams((0.02,), (0,))),
    TensorType((64, 3), i8, QuantParams((0.1, 1 / 3, 1e-7), (0, -1, 5), 1, 8, True)),
    TensorType((64, 3), i8, QuantParams((0.5,), (3,), None, 4, False)),
    TensorType((64, 16), f32, encoding=NM(2, 4)),
    TensorType((64, 128), f32, encoding=BinaryCoded(3, 128, True)),
    TensorType((64, 128), f32, encoding=BinaryCoded(2, 64, False)),
    TensorType((8, 8), i4, QuantParams((0.25,), (0,), None, 4, True), NM(2, 4)),
]


@pytest.mark.parametrize("t", TYPES, ids=str)
def test_type_roundtrip(t: TensorType) -> None:
    assert parse_type(format_type(t)) == t
    assert str(t) == format_type(t)


def test_type_text() -> None:
    assert format_type(TYPES[1]) == "f32[]"
    assert format_type(TYPES[6]) == "i8[1,64] quant<scale=[0.02], zp=[0], axis=none, bits=8>"
    assert format_type(TYPES[7]).endswith("axis=1, bits=8, symmetric>")
    assert format_type(TYPES[9]) == "f32[64,16] nm<2,4>"
    assert format_type(TYPES[10]) == "f32[64,128] binary<bits=3, group=128, pow2>"
    assert format_type(TYPES[11]) == "f32[64,128] binary<bits=2, group=64>"


def test_quant_and_encoding_in_a_graph() -> None:
    qt = TYPES[7]
    w = make_constant("w", RNG.integers(-128, 128, (64, 3), dtype=np.int8), qt)
    node = Node("qop", ("x", "w"), (Value("y", TYPES[12]),), Attrs(out_dtype=i4))
    g = Graph("q", (Value("x", TYPES[6]),), ("y",), (node,), (w,))
    roundtrip(g)


# ---- names, absent inputs, multiple outputs ----------------------------------------------------


def test_quoted_and_dotted_names() -> None:
    t = TensorType((2,), f32)
    names = ["weird/name:0", "1st", "has space", 'q"uote', "a.b_c", "_x", "ünï"]
    nodes = tuple(
        Node("relu", (prev,), (Value(n, t),)) for prev, n in zip(["in put"] + names, names)
    )
    g = Graph("my graph/v1", (Value("in put", t),), (names[-1], "a.b_c"), nodes)
    text = print_graph(roundtrip(g))
    assert '%"weird/name:0"' in text and "%a.b_c" in text and '@"my graph/v1"' in text


def test_ops_named_like_keywords_or_oddly_are_quoted() -> None:
    t = TensorType((2,), f32)
    nodes = (
        Node("return", ("x",), (Value("a", t),)),
        Node("ns/op", ("a",), (Value("b", t),)),
        Node("sink", ("b",), ()),
    )
    roundtrip(Graph("g", (Value("x", t),), ("b",), nodes))


def test_underscore_alone_is_a_name_except_as_an_input() -> None:
    t = TensorType((2,), f32)
    nodes = (Node("_", ("_", ""), (Value("__", t),), Attrs({"_": 1})), Node("_", ("__",), ()))
    g = roundtrip(Graph("_", (Value("_", t),), ("__",), nodes))
    assert "%__: f32[2] = _(%_, _) {_=1}" in print_graph(g)


def test_absent_inputs_and_multiple_outputs() -> None:
    t = TensorType((2,), f32)
    outs = (Value("o1", t), Value("o2", TensorType((), i64)), Value("o3", t))
    node = Node("multi", ("", "x", "", ""), outs, loc='node/with"quote')
    g = Graph("g", (Value("x", t),), ("o3", "o1", "x"), (node,))
    text = print_graph(roundtrip(g))
    assert "multi(_, %x, _, _)" in text
    assert "%o1, %o2, %o3: f32[2], i64[], f32[2] = multi" in text


def test_empty_graph() -> None:
    g = roundtrip(Graph("empty", (), (), ()))
    assert print_graph(g) == "graph @empty() -> () {\n  return\n}\n"


# ---- constants ---------------------------------------------------------------------------------


def _const_cases() -> list[tuple[str, np.ndarray, TensorType | None]]:
    cases: list[tuple[str, np.ndarray, TensorType | None]] = []
    for shape in [(), (3,), (4, 4), (3, 5, 7)]:  # 1, 3, 16 elements: inline; 105: base64
        cases += [
            ("f32", RNG.standard_normal(shape).astype(np.float32), None),
            ("f16", RNG.standard_normal(shape).astype(np.float16), None),
            ("f64", RNG.standard_normal(shape), None),
            ("i64", RNG.integers(-(2**62), 2**62, shape, dtype=np.int64), None),
            ("i8", RNG.integers(-128, 128, shape, dtype=np.int8), None),
            ("u8", RNG.integers(0, 256, shape, dtype=np.uint8), None),
            ("bool", RNG.integers(0, 2, shape).astype(bool), None),
            ("i4", RNG.integers(-8, 8, shape, dtype=np.int8), TensorType(shape, i4)),
            ("u4", RNG.integers(0, 16, shape, dtype=np.uint8), TensorType(shape, u4)),
            ("bf16", RNG.standard_normal(shape).astype(bf16.numpy), TensorType(shape, bf16)),
        ]
    cases.append(("empty", np.zeros((0, 3), np.float32), None))
    cases.append(("special", np.array([np.nan, np.inf, -np.inf, -0.0], np.float32), None))
    cases.append(("u64max", np.array([2**64 - 1, 0], np.uint64), None))
    cases.append(("fortran", np.asfortranarray(RNG.standard_normal((5, 7))), None))
    return cases


@pytest.mark.parametrize("index", range(len(_const_cases())))
def test_constant_roundtrip(index: int) -> None:
    label, data, t = _const_cases()[index]
    c = make_constant("c", data, t)
    g = Graph("g", (), ("c",), (), (c,))
    back = roundtrip(g).constants[0]
    assert back.data.dtype == c.data.dtype and back.data.shape == c.data.shape
    assert not back.data.flags.writeable
    assert np.array_equal(back.data, c.data, equal_nan=c.data.dtype.kind == "f"), label
    if c.data.dtype.kind == "f":
        assert np.array_equal(np.signbit(back.data), np.signbit(c.data))  # -0.0 survives
    listed = c.data.size <= 16 and label != "bf16"
    assert ("dense<[" in print_graph(g)) == listed, label


def test_constant_text() -> None:
    consts = (
        make_constant("b", np.array([0.1, 0.2, 0.3], np.float32)),
        make_constant("s", np.float32(1.0)),
        make_constant("m", np.array([[True, False]])),
        make_constant("k", np.array([-3, 4], np.int8)),
    )
    text = print_graph(Graph("g", (), ("b", "s", "m", "k"), (), consts))
    assert (
        "const %b: f32[3] = dense<[0.10000000149011612, 0.20000000298023224, 0.30000001192092896]>"
        in text
    )
    assert "const %s: f32[] = dense<[1.0]>" in text
    assert "const %m: bool[1,2] = dense<[true, false]>" in text
    assert "const %k: i8[2] = dense<[-3, 4]>" in text


def test_hand_written_constants() -> None:
    text = """graph @g() -> (%a, %b) {
      const %a: f32[2] = dense<[1, -2.5]>
      const %b: i32[2] = dense<base64:"AQAAAP////8=">
      return %a, %b
    }"""
    g = parse_graph(text)
    assert g.constants[0].data.tolist() == [1.0, -2.5]
    assert g.constants[1].data.dtype == np.int32 and g.constants[1].data.tolist() == [1, -1]


def test_large_constants_are_fast() -> None:
    data = RNG.standard_normal((1024, 1024, 4)).astype(np.float32)  # 16 MB
    g = Graph("big", (), ("w",), (), (make_constant("w", data),))
    start = time.perf_counter()
    roundtrip(g)
    assert time.perf_counter() - start < 3.0  # ~0.3 s; a per-element loop takes far longer


# ---- elided constants --------------------------------------------------------------------------


def test_elided_constants() -> None:
    small = make_constant("small", np.arange(16, dtype=np.int64))
    big = make_constant("big", np.ones((4, 5), np.float32))
    g = Graph("g", (), ("small", "big"), (), (small, big))
    text = print_graph(g, constants="elide")
    assert "const %small: i64[16] = dense<[0, 1, 2" in text
    assert "const %big: f32[4,5] = dense<elided sha256=" in text and "bytes=80>" in text
    assert str(g) == text
    with pytest.raises(ParseError, match=r"line 3:.*elided.*constants='inline'"):
        parse_graph(text)
    with pytest.raises(ValueError):
        print_graph(g, constants="none")  # type: ignore[arg-type]


# ---- errors ------------------------------------------------------------------------------------

HEADER = "graph @g(%x: f32[2]) -> (%y) {\n"

BAD = [
    ("", r"line 1:1: expected 'graph'"),
    ("graph @g(%x: f33[2]) -> (%y) {", r"line 1:14: unknown element type 'f33'"),
    ("graph @g(%x: f32[2] -> (%y) {", r"line 1:21: expected '\)' after the graph inputs"),
    ("graph @g(%x: f32) -> (%y) {", r"line 1:17: expected '\[' before the shape"),
    (HEADER + "  %y: f32[2] = relu(%x\n  return %y\n}", r"line 3:3: expected '\)' after the"),
    (
        HEADER + "  %y: f32[2] = relu(%x) {a=}\n  return %y\n}",
        r"line 2:28: expected an attribute value",
    ),
    (HEADER + "  %y: f32[2] = relu(%x) {a=1, a=2}\n}", r"line 2:31: attribute 'a' given twice"),
    (HEADER + "  %y, %z: f32[2] = relu(%x)\n  return %y\n}", r"line 2:3: 2 output names but 1"),
    (HEADER + "  %y: f32[2] = relu(%x)\n  return %x\n}", r"line 3:3: 'return' lists \['x'\]"),
    (HEADER + "  %y: f32[2] = relu(%x)\n", r"line 3:1: expected 'return' before"),
    (HEADER + "  return %y\n}\nextra", r"line 4:1: expected end of input"),
    (HEADER + '  %y: f32[2] = relu(%x) loc("open\n', r"line 2:34: bad string literal"),
    (HEADER + "  %y: f32[2] = relu(%x) # no\n", r"line 2:25: unexpected character '#'"),
    (HEADER + "  const %c: f32[3] = dense<[1.0, 2.0]>\n", r"line 2:29: .*3 elements.* 2 values"),
    (HEADER + "  const %c: i8[2] = dense<[1, 200]>\n", r"line 2:31: .*200 is out of range of i8"),
    (HEADER + "  const %c: i32[1] = dense<[1.5]>\n", r"line 2:29: .*1.5 does not fit i32"),
    (HEADER + "  const %c: bool[1] = dense<[1]>\n", r"line 2:30: .*1 does not fit bool"),
    (HEADER + '  const %c: f32[2] = dense<base64:"AAAA">\n', r"line 2:35: .*3 bytes.* takes 8"),
    (HEADER + '  const %c: f32[1] = dense<base64:"A*==">\n', r"line 2:35: .*bad base64"),
    (HEADER + "  const %c: fixed<8,3>[1] = dense<[1]>\n", r"line 2:29: .*no numpy storage"),
    (
        "graph @g(%x: i8[2] quant<scale=[1.0, 2.0], zp=[0, 0], axis=none, bits=8>) -> () {",
        r"line 1:20: QuantParams: per-tensor",
    ),
    (
        "graph @g(%x: i8[2] quant<scale=[1.0], zp=[0], axis=none, bits=8, sym>)",
        r"line 1:66: expected 'symmetric'",
    ),
]


@pytest.mark.parametrize("text, message", BAD)
def test_parse_errors_say_where_and_what(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_graph(text)


def test_parse_type_rejects_trailing_text() -> None:
    with pytest.raises(ParseError, match="line 1:10: expected end of the type"):
        parse_type("f32[1,2] f32")


# ---- loop IR printer ---------------------------------------------------------------------------


def test_print_kernel() -> None:
    i, j = L.Var("i"), L.Var("j")
    acc = L.Var("acc", f32)
    body = L.Seq(
        (
            L.Allocate(
                "tmp",
                f32,
                4,
                "local",
                L.Store("tmp", j, L.Load("in0", L.add(L.mul(i, 4), j)) * 2.0),
            ),
            L.Let(
                acc,
                L.call("exp", L.Load("in0", i)),
                L.If(
                    L.lt(acc, 1.0),
                    L.Store("out0", i, L.Cast(f16, L.select(L.gt(acc, 0.5), acc, -acc))),
                    L.Store("out0", i, L.Const(0.0, f16)),
                ),
            ),
        )
    )
    loop = L.For(i, L.Const(0), L.Const(64), body, "parallel")
    k = L.Kernel(
        "k",
        (L.Param("in0", f32, 256), L.Param("out0", f16, 64, True)),
        L.For(j, L.Const(2), L.Const(4), loop, "unrolled", (("unroll", 4),)),
        info=(("ops", "exp"),),
    )
    assert print_kernel(k) == (
        "kernel k(in0: f32[256], out out0: f16[64]):\n"
        "  // ops=exp\n"
        "  for j in [2, 6) unrolled {unroll=4}:\n"
        "    for i in [0, 64) parallel:\n"
        "      allocate local tmp: f32[4] in:\n"
        "        tmp[j] = in0[i * 4 + j] * 2.0\n"
        "      let acc: f32 = exp(in0[i])\n"
        "      if acc < 1.0:\n"
        "        out0[i] = f16(select(acc > 0.5, acc, -acc))\n"
        "      else:\n"
        "        out0[i] = f16(0.0)\n"
    )


def test_print_kernel_parenthesizes_by_precedence() -> None:
    a, b, c = L.Var("a"), L.Var("b"), L.Var("c")
    e = L.BinOp("-", a, L.BinOp("-", b, c)) * L.BinOp("+", a, b)
    k = L.Kernel("k", (), L.Store("o", L.Const(0), L.BinOp("min", e, L.UnOp("-", a + b))))
    assert "o[0] = min((a - (b - c)) * (a + b), -(a + b))" in print_kernel(k)
