"""In-place reuse: which kernels may overwrite an input (proved on their loop IR), which launches
do, and that compiled in-place programs compute what the interpreter computes."""

from __future__ import annotations

import numpy as np
import pytest

import modelc
from modelc.ir import GraphBuilder, TensorType
from modelc.ir import loop as L
from modelc.ir.dtypes import f32, i32
from modelc.ir.graph import Graph
from modelc.ir.interpreter import run_graph
from modelc.ir.program import inplace_variant
from modelc.passes.plan_memory_inplace import inplace_pairs
from modelc.testing import lower_op, random_inputs

X = np.zeros((4, 8), np.float32)


@pytest.mark.parametrize(
    ("op", "inputs", "attrs", "pairs"),
    [
        ("relu", [X], {}, ((0, 1),)),
        ("add", [X, X], {}, ((0, 2),)),  # the first input that fits; each param once
        ("add", [np.zeros(8, np.float32), X], {}, ((1, 2),)),  # broadcast operand: never
        ("add", [np.zeros((4, 1), np.float32), X], {}, ((1, 2),)),
        ("cast", [X], {"to": i32}, ()),  # the bytes change type
        ("transpose", [X], {"perm": (1, 0)}, ()),  # reads another element
        ("matmul", [np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)], {}, ()),
        ("softmax", [X], {"axis": 1}, ()),  # reads the whole row
    ],
)
def test_inplace_pairs_of_op_kernels(op, inputs, attrs, pairs) -> None:
    kernel, _ = lower_op(op, inputs, attrs)
    assert inplace_pairs(kernel) == pairs


def test_batch_norm_kernel_is_in_place_safe() -> None:
    """Per-channel affine: reads x at the element it writes; the params are read per channel."""
    c = np.ones(3, np.float32)
    kernel, _ = lower_op("batch_norm", [np.zeros((1, 3, 4, 4), np.float32), c, c, c, c])
    assert inplace_pairs(kernel) == ((0, 5),)


def _kernel(body: L.Stmt) -> L.Kernel:
    params = (L.Param("in0", f32, 8), L.Param("out0", f32, 8, True))
    return L.Kernel("k", params, body)


I = L.Var("i")


def _loop(body: L.Stmt) -> L.Stmt:
    return L.For(I, L.Const(0), L.Const(8), body)


def test_hand_written_kernels() -> None:
    ok = _loop(L.Store("out0", I, L.Load("in0", I) * 2.0))
    assert inplace_pairs(_kernel(ok)) == ((0, 1),)
    # A Let evaluated before the store, in the same iteration: still safe.
    v = L.Var("v", f32)
    let = _loop(L.Let(v, L.Load("in0", I), L.Store("out0", I, v + v)))
    assert inplace_pairs(_kernel(let)) == ((0, 1),)
    unsafe = {
        "reads a neighbour": _loop(L.Store("out0", I, L.Load("in0", (I + 1) % 8))),
        "reads after the write": _loop(
            L.seq(L.Store("out0", I, L.Const(0.0, f32)), L.Store("out0", I, L.Load("in0", I)))
        ),
        "reads its output": _loop(L.Store("out0", I, L.Load("out0", I) + L.Load("in0", I))),
        "writes a permuted index": _loop(
            L.Store("out0", L.Const(7) - I, L.Load("in0", L.Const(7) - I))
        ),
        "writes every element twice": L.For(
            L.Var("r"), L.Const(0), L.Const(2), _loop(L.Store("out0", I, L.Load("in0", I)))
        ),
    }
    for why, body in unsafe.items():
        assert inplace_pairs(_kernel(body)) == (), why


def test_inplace_variant_folds_the_output_into_the_input() -> None:
    kernel, _ = lower_op("add", [X, X])
    variant = inplace_variant(kernel, ((0, 2),))
    assert [(p.name, p.is_output) for p in variant.params] == [("in0", True), ("in1", False)]
    assert inplace_pairs(variant) == ()  # no separate output left to pair


UNFUSED = "fold-constants,eliminate-dead-code,lower-to-loops,plan-memory"


def _pipelines(inplace: bool) -> dict[str, str]:
    """The unfused pipeline (every op its own kernel: long in-place chains) and the cpu
    target's default (fused kernels), with plan-memory's in-place reuse on or off."""
    from dataclasses import replace

    from modelc.passes.registry import format_pipeline, parse_pipeline
    from modelc.targets.registry import get_target

    out = {}
    for name, text in (("unfused", UNFUSED), ("default", get_target("cpu").pipeline)):
        passes = parse_pipeline(text)
        passes = [replace(p, inplace=inplace) if p.name == "plan-memory" else p for p in passes]
        out[name] = format_pipeline(passes)
    return out


def _elementwise_chain() -> Graph:
    """x -> neg -> exp -> add(bias) -> mul -> sigmoid -> relu -> sub -> reshape -> neg -> abs,
    with a side branch (tanh, a graph output) that two later kernels read."""
    b = GraphBuilder("ew_chain")
    x = b.add_input("x", TensorType((8, 64), f32))
    bias = b.add_constant(np.linspace(-1, 1, 64, dtype=np.float32), "bias")
    v = b.add("neg", x)
    v = b.add("exp", v)
    keep = b.add("tanh", v)
    v = b.add("add", v, bias)
    v = b.add("mul", v, keep)
    v = b.add("sigmoid", v)
    v = b.add("relu", v)
    v = b.add("sub", v, keep)
    v = b.add("reshape", v, shape=(512,))
    v = b.add("neg", v)
    b.set_outputs([b.add("abs", v), keep])
    return b.build()


def test_compiled_in_place_chain_matches_interpreter(tmp_path) -> None:
    graph = _elementwise_chain()
    pipeline = _pipelines(True)["unfused"]
    lib = modelc.compile(graph, target="cpu", pipeline=pipeline, output_dir=tmp_path, verify=True)
    report = lib.manifest["pass_reports"]["plan-memory"]
    assert report["inplace_launches"] >= 4
    source = (tmp_path / "model.c").read_text()
    assert "_inplace_" in source and "(in place)" in source
    feeds = random_inputs(graph)
    got = lib.run(feeds)
    want = run_graph(graph, feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, err_msg=k)
    # The separate-slot plan computes the same bits in a larger workspace.
    plain = modelc.compile(graph, target="cpu", pipeline=_pipelines(False)["unfused"])
    assert plain.manifest["workspace_bytes"] > lib.manifest["workspace_bytes"]
    for k, v in plain.run(feeds).items():
        np.testing.assert_array_equal(v, got[k])


def test_a_value_read_twice_is_not_overwritten() -> None:
    """add(v, v): both operands are the same bytes, so the output may not overwrite them."""
    from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline

    b = GraphBuilder("twice")
    x = b.add_input("x", TensorType((8,), f32))
    v = b.add("neg", x)
    w = b.add("add", v, v)
    b.set_outputs([b.add("relu", w)])
    prog = run_pipeline(b.build(), parse_pipeline("lower-to-loops,plan-memory"), PassContext())
    assert [la.inplace for la in prog.launches] == [(), (), ()]


@pytest.mark.parametrize("pipeline", ["unfused", "default"])
def test_compiled_random_graphs_match_interpreter(pipeline: str) -> None:
    """Random DAGs (shared with test_plan_memory) through the C compiler: the in-place plan
    gives the same bits as separate slots, and matches the interpreter."""
    from test_plan_memory import _random_graph

    with_inplace, without = _pipelines(True)[pipeline], _pipelines(False)[pipeline]
    total = 0
    for seed in (4, 10, 12, 17):  # under the default pipeline, fused kernels run in place here
        graph = _random_graph(seed)
        lib = modelc.compile(graph, target="cpu", pipeline=with_inplace)
        plain = modelc.compile(graph, target="cpu", pipeline=without)
        total += lib.manifest["pass_reports"]["plan-memory"]["inplace_launches"]
        feeds = random_inputs(graph, seed)
        want = run_graph(graph, feeds)
        expected = plain.run(feeds)
        for k, v in lib.run(feeds).items():
            np.testing.assert_array_equal(v, expected[k], err_msg=f"seed {seed}: {k}")
            # Chained matmuls reach 1e4: compare relative to the output's magnitude.
            scale = float(np.abs(want[k]).max()) + 1.0
            np.testing.assert_allclose(v, want[k], rtol=1e-5, atol=1e-5 * scale, err_msg=k)
    assert total > 0
