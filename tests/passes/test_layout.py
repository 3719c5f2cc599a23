"""layout: NCHW is a no-op; NHWC reports the channels-first ops it cannot convert and cancels
the transposes of channels-last imports by sinking them through layout-agnostic ops."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from modelc.errors import PipelineError
from modelc.ir.parser import parse_graph
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline
from modelc.testing import check_pass

CONV = "{dilations=[1, 1], group=1, pads=[0, 0, 0, 0], strides=[1, 1]}"

# What tf2onnx makes of a channels-last model: each conv wrapped in NHWC<->NCHW transposes,
# activations, a bias add, a residual add and a channel concat in NHWC between them.
TF_STYLE = f"""
graph @g(%x: f32[1,4,4,2]) -> (%y) {{
  const %w: f32[2,2,1,1] = dense<[1.0, 2.0, 3.0, 4.0]>
  const %w1: f32[2,2,1,1] = dense<[0.5, 1.0, -1.0, 2.0]>
  const %w2: f32[2,4,1,1] = dense<[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]>
  const %b: f32[2] = dense<[0.5, -0.5]>
  const %s: f32[4] = dense<[1.0, 2.0, 3.0, 4.0]>
  %a: f32[1,2,4,4] = transpose(%x) {{perm=[0, 3, 1, 2]}}
  %c1: f32[1,2,4,4] = conv(%a, %w) {CONV}
  %h1: f32[1,4,4,2] = transpose(%c1) {{perm=[0, 2, 3, 1]}}
  %h2: f32[1,4,4,2] = add(%h1, %b)
  %h3: f32[1,4,4,2] = relu(%h2)
  %h4: f32[1,4,4,2] = add(%h3, %x)
  %c1b: f32[1,2,4,4] = conv(%a, %w1) {CONV}
  %g1: f32[1,4,4,2] = transpose(%c1b) {{perm=[0, 2, 3, 1]}}
  %g2: f32[1,4,4,2] = sigmoid(%g1)
  %h5: f32[1,4,4,4] = concat(%h4, %g2) {{axis=3}}
  %h6: f32[1,4,4,4] = mul(%s, %h5)
  %h7: f32[1,1,1,4] = reduce_max(%h6) {{axes=[1, 2], keepdims=true}}
  %p: f32[1,4,1,1] = transpose(%h7) {{perm=[0, 3, 1, 2]}}
  %c2: f32[1,2,1,1] = conv(%p, %w2) {CONV}
  %y: f32[1,1,1,2] = transpose(%c2) {{perm=[0, 2, 3, 1]}}
  return %y
}}
"""


def test_nchw_is_a_no_op() -> None:
    check_pass("layout{format=nchw}", TF_STYLE, TF_STYLE)
    check_pass("layout", TF_STYLE, TF_STYLE)  # cpu declares no preferred layout


def test_nhwc_cancels_the_transposes_between_convs() -> None:
    """conv 1's NCHW->NHWC transpose sinks through the bias add (the bias re-packed to
    [1,2,1,1] at compile time), the relu and the residual add of the NHWC input (whose NCHW
    copy %a the conv already made); conv 1b's through its sigmoid; both meet in the concat
    (now on axis 1), sink through the per-channel scale and the spatial max, and cancel with
    the transpose before conv 2. Five transposes become two: the graph's own borders."""
    after = f"""
    graph @g(%x: f32[1,4,4,2]) -> (%y) {{
      const %w: f32[2,2,1,1] = dense<[1.0, 2.0, 3.0, 4.0]>
      const %w1: f32[2,2,1,1] = dense<[0.5, 1.0, -1.0, 2.0]>
      const %w2: f32[2,4,1,1] = dense<[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]>
      const %b: f32[1,2,1,1] = dense<[0.5, -0.5]>
      const %s: f32[1,4,1,1] = dense<[1.0, 2.0, 3.0, 4.0]>
      %a: f32[1,2,4,4] = transpose(%x) {{perm=[0, 3, 1, 2]}}
      %c1: f32[1,2,4,4] = conv(%a, %w) {CONV}
      %h2: f32[1,2,4,4] = add(%c1, %b)
      %h3: f32[1,2,4,4] = relu(%h2)
      %h4: f32[1,2,4,4] = add(%h3, %a)
      %c1b: f32[1,2,4,4] = conv(%a, %w1) {CONV}
      %g2: f32[1,2,4,4] = sigmoid(%c1b)
      %h5: f32[1,4,4,4] = concat(%h4, %g2) {{axis=1}}
      %h6: f32[1,4,4,4] = mul(%s, %h5)
      %h7: f32[1,4,1,1] = reduce_max(%h6) {{axes=[2, 3], keepdims=true}}
      %c2: f32[1,2,1,1] = conv(%h7, %w2) {CONV}
      %y: f32[1,1,1,2] = transpose(%c2) {{perm=[0, 2, 3, 1]}}
      return %y
    }}
    """
    check_pass("layout{format=nhwc}", TF_STYLE, after)


def test_nhwc_reports_the_ops_that_stay_channels_first() -> None:
    ctx = PassContext(verify=True)
    run_pipeline(parse_graph(TF_STYLE), parse_pipeline("layout{format=nhwc}"), ctx)
    assert ctx.reports["layout"]["nchw_only"] == {"conv": 3}
    assert ctx.reports["layout"]["format"] == "nhwc"


def test_format_comes_from_the_target_capabilities() -> None:
    @dataclass(frozen=True)
    class Caps:
        preferred_layout: str = "nhwc"

    ctx = PassContext(verify=True, capabilities=Caps())
    out = run_pipeline(parse_graph(TF_STYLE), parse_pipeline("layout"), ctx)
    assert sum(n.op == "transpose" for n in out.nodes) == 2
    with pytest.raises(PipelineError, match="format must be"):
        parse_pipeline("layout{format=nchwc}")


def test_transposes_with_other_readers_stay() -> None:
    before = """
    graph @g(%x: f32[2,3,4]) -> (%y, %t) {
      %t: f32[4,2,3] = transpose(%x) {perm=[2, 0, 1]}
      %r: f32[4,2,3] = relu(%t)
      %y: f32[2,3,4] = transpose(%r) {perm=[1, 2, 0]}
      return %y, %t
    }
    """
    check_pass("layout{format=nhwc}", before, before)


def test_softmax_and_mixed_operands() -> None:
    before = """
    graph @g(%x: f32[2,3,4], %z: f32[2,3,4]) -> (%y) {
      const %c: f32[3] = dense<[1.0, 2.0, 3.0]>
      %t: f32[4,2,3] = transpose(%x) {perm=[2, 0, 1]}
      %tz: f32[4,2,3] = transpose(%z) {perm=[2, 0, 1]}
      %s: f32[4,2,3] = sub(%c, %t)
      %m: f32[4,2,3] = mul(%s, %tz)
      %sm: f32[4,2,3] = softmax(%m) {axis=0}
      %y: f32[2,3,4] = transpose(%sm) {perm=[1, 2, 0]}
      return %y
    }
    """
    after = """
    graph @g(%x: f32[2,3,4], %z: f32[2,3,4]) -> (%y) {
      const %c: f32[1,3,1] = dense<[1.0, 2.0, 3.0]>
      %s: f32[2,3,4] = sub(%c, %x)
      %m: f32[2,3,4] = mul(%s, %z)
      %y: f32[2,3,4] = softmax(%m) {axis=2}
      return %y
    }
    """
    check_pass("layout{format=nhwc}", before, after)
