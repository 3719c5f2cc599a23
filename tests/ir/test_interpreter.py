"""The reference interpreter: results, input checks, tracing and freeing of intermediates."""

from __future__ import annotations

import sys
import weakref
from collections.abc import Sequence

import numpy as np
import pytest
from irtest_ops import T, small_graph

from modelc.errors import InputError, ShapeError, VerifyError
from modelc.ir import Attrs, Graph, Node, TensorType, Value, get_op
from modelc.ir import interpreter as interp
from modelc.ir.dtypes import f32, i8, i32
from modelc.ir.graph import make_constant
from modelc.ir.interpreter import run_graph
from modelc.ir.opdef import OpDef
from modelc.ir.parser import parse_graph
from modelc.ir.printer import print_graph

RNG = np.random.default_rng(0)


def expected_small(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    s1 = (x + w) * np.float32(2.0) + np.float32(0.5)
    idx = np.argsort(-s1, axis=-1, kind="stable")[:, :3]
    return np.take_along_axis(s1, idx, axis=-1), idx


def test_small_graph() -> None:
    x = RNG.standard_normal((2, 8)).astype(np.float32)
    out = run_graph(small_graph(), {"x": x})
    assert list(out) == ["v", "i"]
    v, i = expected_small(x)
    np.testing.assert_allclose(out["v"], v, rtol=1e-6)
    np.testing.assert_array_equal(out["i"], i)
    assert out["v"].dtype == np.float32 and out["i"].dtype == np.int64


def test_parsed_graph_gives_identical_results() -> None:
    x = RNG.standard_normal((2, 8)).astype(np.float32)
    a = run_graph(small_graph(), {"x": x})
    b = run_graph(parse_graph(print_graph(small_graph())), {"x": x})
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_integer_graph_is_exact() -> None:
    t = TensorType((5,), i8)
    c = make_constant("c", np.array([1, -2, 3, 100, -128], np.int8))
    nodes = (
        Node("add", ("x", "c"), (Value("s", t),)),
        Node("cast", ("s",), (Value("y", TensorType((5,), i32)),), Attrs(to=i32)),
    )
    g = Graph("int", (Value("x", t),), ("y", "s"), nodes, (c,))
    x = np.array([1, 2, 3, 100, -1], np.int8)
    out = run_graph(g, {"x": x})
    np.testing.assert_array_equal(out["s"], (x + c.data).astype(np.int8))  # wraps like int8
    assert out["y"].dtype == np.int32


def test_outputs_may_be_inputs_or_constants_and_repeat() -> None:
    g = small_graph().replace(outputs=("x", "w", "v", "x"))
    x = np.ones((2, 8), np.float32)
    out = run_graph(g, {"x": x})
    assert list(out) == ["x", "w", "v"]
    np.testing.assert_array_equal(out["x"], x)
    assert out["w"] is g.constants[0].data


def test_trace_returns_every_value() -> None:
    x = np.zeros((2, 8), np.float32)
    out = run_graph(small_graph(), {"x": x}, trace=True)
    assert set(out) == {"s0", "s1", "v", "i"}
    np.testing.assert_allclose(out["s0"], small_graph().constants[0].data)


# ---- input checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({}, r"inputs missing \['x'\]; it takes x: f32\[2,8\]"),
        ({"x": np.zeros((2, 8), np.float32), "y": 1}, r"unknown \['y'\]"),
        ({"x": np.zeros((2, 9), np.float32)}, r"input 'x' expects f32\[2,8\].*got f32\[2,9\]"),
        (
            {"x": np.zeros((2, 8))},
            r"input 'x' expects f32\[2,8\] \(numpy float32\), got f64\[2,8\]",
        ),
        ({"x": [[0.0] * 8] * 2}, r"got f64\[2,8\]"),
    ],
)
def test_bad_inputs(inputs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        run_graph(small_graph(), inputs)


def test_inputs_are_not_modified() -> None:
    t = TensorType((3,), f32)
    g = Graph("g", (Value("x", t),), ("y",), (Node("test_inplace", ("x",), (Value("y", t),)),))
    x = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="read-only"):
        run_graph(g, {"x": x})
    assert not x.any()


# ---- errors during evaluation ------------------------------------------------------------------


def test_undefined_value_is_reported() -> None:
    g = small_graph()
    g = g.replace(nodes=(g.nodes[1],) + g.nodes)
    with pytest.raises(VerifyError, match="test_scale node 'scale1' \\(node #0\\) reads %s0"):
        run_graph(g, {"x": np.zeros((2, 8), np.float32)})


def test_errors_name_the_node() -> None:
    t = TensorType((3,), f32)
    fail = Node("test_fail", ("x",), (Value("y", t),), loc="the/fail")
    g = Graph("g", (Value("x", t),), ("y",), (fail,))
    with pytest.raises(ShapeError, match=r"test_fail node 'the/fail' \(node #0\): the reference"):
        run_graph(g, {"x": np.zeros(3, np.float32)})


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes need Python 3.11")
def test_reference_bugs_get_a_note() -> None:
    t = TensorType((3,), f32)
    bad = Node("add", ("x", "c"), (Value("y", t),), loc="the/add")  # (3,) + (4,): wrong
    c = make_constant("c", np.zeros(4, np.float32))
    g = Graph("g", (Value("x", t),), ("y",), (bad,), (c,))
    with pytest.raises(ValueError) as info:
        run_graph(g, {"x": np.zeros(3, np.float32)})
    assert "while evaluating add node 'the/add' (node #0)" in info.value.__notes__


# ---- memory ------------------------------------------------------------------------------------


class _Spy:
    """Stands in for an OpDef: records, at each evaluation, which earlier results are alive."""

    def __init__(self, opdef: OpDef, refs: list, alive: list) -> None:
        self.opdef, self.refs, self.alive = opdef, refs, alive

    def evaluate(
        self, arrays: Sequence[np.ndarray | None], attrs: Attrs, out_types: Sequence[TensorType]
    ) -> tuple[np.ndarray, ...]:
        self.alive.append([r() is not None for r in self.refs])
        results = self.opdef.evaluate(arrays, attrs, out_types)
        self.refs.extend(weakref.ref(r) for r in results)
        return results


def _chain(n: int) -> Graph:
    nodes = tuple(
        Node(
            "test_scale",
            (f"s{k - 1}" if k else "x",),
            (Value(f"s{k}", T),),
            Attrs(factor=2.0, bias=0.0),
        )
        for k in range(n)
    )
    return Graph("chain", (Value("x", T),), (f"s{n - 1}", "s1"), nodes)


@pytest.mark.parametrize("trace", [False, True])
def test_intermediates_are_freed_after_their_last_use(
    monkeypatch: pytest.MonkeyPatch, trace: bool
) -> None:
    refs: list = []
    alive: list = []
    monkeypatch.setattr(interp, "get_op", lambda name: _Spy(get_op(name), refs, alive))
    out = run_graph(_chain(6), {"x": np.ones((2, 8), np.float32)}, trace=trace)
    np.testing.assert_array_equal(out["s5"], np.full((2, 8), 64.0, np.float32))
    np.testing.assert_array_equal(out["s1"], np.full((2, 8), 4.0, np.float32))
    # When node 5 runs: s4 is its input, s1 is a graph output; s0, s2, s3 are gone.
    assert alive[5] == ([True] * 5 if trace else [False, True, False, False, True])
