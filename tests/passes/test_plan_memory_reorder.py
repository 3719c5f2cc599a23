"""reorder-for-memory: golden, idempotence and interpreter checks, and the peak it reaches on a
graph whose optimum is known."""

from __future__ import annotations

import numpy as np

import modelc
from modelc.ir.interpreter import run_graph
from modelc.ir.parser import parse_graph
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline
from modelc.passes.reorder_for_memory import LiveModel
from modelc.testing import check_pass, random_inputs

# Two branches, each a big intermediate (f32[8,256] = 8 KiB) squeezed back to f32[8,8]
# (256 bytes). The given order starts both branches before finishing either: both big values
# are live at once. Any order computes one small result while the other small one waits, so
# the optimum is one big + two small = 8192 + 2 * 256 = 8704 bytes.
BEFORE = """
graph @branches(%x: f32[8,8], %wa: f32[8,256], %va: f32[256,8], %wb: f32[8,256],
                %vb: f32[256,8]) -> (%y) {
  %a1: f32[8,256] = matmul(%x, %wa)
  %b1: f32[8,256] = matmul(%x, %wb)
  %a2: f32[8,8] = matmul(%a1, %va)
  %b2: f32[8,8] = matmul(%b1, %vb)
  %y: f32[8,8] = add(%a2, %b2)
  return %y
}
"""

AFTER = """
graph @branches(%x: f32[8,8], %wa: f32[8,256], %va: f32[256,8], %wb: f32[8,256],
                %vb: f32[256,8]) -> (%y) {
  %a1: f32[8,256] = matmul(%x, %wa)
  %a2: f32[8,8] = matmul(%a1, %va)    // branch a finishes: a1 dies before b1 exists
  %b1: f32[8,256] = matmul(%x, %wb)
  %b2: f32[8,8] = matmul(%b1, %vb)
  %y: f32[8,8] = add(%a2, %b2)
  return %y
}
"""

BIG, SMALL = 8 * 256 * 4, 8 * 8 * 4


def test_reorder_golden_idempotent_and_numerically_identical() -> None:
    check_pass("reorder-for-memory", BEFORE, AFTER, atol=0.0, rtol=0.0)


def test_reorder_reaches_the_known_optimum() -> None:
    before = parse_graph(BEFORE)
    ctx = PassContext(verify=True)
    after = run_pipeline(before, parse_pipeline("reorder-for-memory"), ctx)
    model = LiveModel(before)
    assert model.peak(before.nodes) == 2 * BIG + SMALL  # a1, b1 and a2 at a2's launch
    assert ctx.reports["reorder-for-memory"] == {
        "peak_before_bytes": 2 * BIG + SMALL,
        "peak_after_bytes": BIG + 2 * SMALL,
    }
    # The workspace plan-memory makes follows: from two big slots down to the optimum.
    plans = {}
    for name, graph in (("before", before), ("after", after)):
        prog = run_pipeline(graph, parse_pipeline("lower-to-loops,plan-memory"), PassContext())
        plans[name] = prog.plan
    assert plans["before"].workspace_bytes == 2 * BIG + SMALL
    assert plans["after"].workspace_bytes == plans["after"].lower_bound_bytes == BIG + 2 * SMALL


def test_reordered_program_compiles_to_the_same_numbers() -> None:
    graph = parse_graph(BEFORE)
    feeds = random_inputs(graph)
    pipeline = "reorder-for-memory,lower-to-loops,plan-memory"
    lib = modelc.compile(graph, target="cpu", pipeline=pipeline, verify=True)
    assert lib.manifest["workspace_bytes"] == BIG + 2 * SMALL
    np.testing.assert_allclose(lib.run(feeds)["y"], run_graph(graph, feeds)["y"], rtol=1e-5)


def test_a_graph_already_in_its_best_order_is_unchanged() -> None:
    chain = """
    graph @chain(%x: f32[4,4]) -> (%r, %y) {
      %a: f32[4,4] = neg(%x)
      %b: f32[4,4] = exp(%a)
      %r: f32[16] = reshape(%b) {shape=[16]}   // a view that is an output: lives to the end
      %y: f32[4,4] = relu(%b)
      return %r, %y
    }
    """
    check_pass("reorder-for-memory", chain, chain)


def test_reorder_lowers_shufflenet_and_keeps_its_outputs() -> None:
    """A real architecture (the onnx wheel's ShuffleNet): reordering its channel-shuffle
    branches lowers the peak, and the interpreter gives bit-identical outputs."""
    from pathlib import Path

    import onnx

    from modelc.frontend.onnx import load_onnx

    path = Path(onnx.__file__).parent / "backend/test/data/light/light_shufflenet.onnx"
    graph = run_pipeline(load_onnx(str(path)), parse_pipeline("fold-constants"), PassContext())
    ctx = PassContext(verify=True)
    after = run_pipeline(graph, parse_pipeline("reorder-for-memory"), ctx)
    report = ctx.reports["reorder-for-memory"]
    assert report["peak_after_bytes"] < report["peak_before_bytes"]
    assert after.nodes != graph.nodes and set(after.nodes) == set(graph.nodes)
    feeds = random_inputs(graph)
    want, got = run_graph(graph, feeds), run_graph(after, feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
