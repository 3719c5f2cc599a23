"""layout: NCHW is a no-op; NHWC converts conv / pool regions to channels-last (transposes only
at the region borders, weights packed at compile time), reports the channels-first ops it
cannot convert, and cancels transposes by sinking them through layout-agnostic ops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from modelc.errors import PipelineError
from modelc.ir.parser import parse_graph
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline
from modelc.testing import check_pass

CONV = "{dilations=[1, 1], group=1, pads=[0, 0, 0, 0], strides=[1, 1]}"
NHWC = '{dilations=[1, 1], group=1, layout="nhwc", pads=[0, 0, 0, 0], strides=[1, 1]}'
DECONV = "{dilations=[1, 1], group=1, output_padding=[0, 0], pads=[0, 0, 0, 0], strides=[1, 1]}"


def _deconv(text: str) -> str:
    """The same graph with its 1x1 convs as 1x1 conv_transposes (w [C, M, 1, 1]), an op the
    pass leaves NCHW: what is left to test is the sinking and cancelling alone."""
    text = text.replace("conv(", "conv_transpose(").replace(CONV, DECONV)
    return text.replace("%w2: f32[2,4,1,1]", "%w2: f32[4,2,1,1]")


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


def test_nhwc_converts_a_channels_last_import_without_transposes() -> None:
    """Every conv of the tf2onnx-style graph runs NHWC with its weight packed [kh, kw, C, M] at
    compile time; the transposes the import wrapped them in cancel with the ones the pass put
    at each conv's borders, and the per-channel constants stay as imported: no transpose is
    left at all."""
    after = f"""
    graph @g(%x: f32[1,4,4,2]) -> (%y) {{
      const %b: f32[2] = dense<[0.5, -0.5]>
      const %s: f32[4] = dense<[1.0, 2.0, 3.0, 4.0]>
      const %w: f32[1,1,2,2] = dense<[1.0, 3.0, 2.0, 4.0]>
      const %w1: f32[1,1,2,2] = dense<[0.5, -1.0, 1.0, 2.0]>
      const %w2: f32[1,1,4,2] = dense<[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]>
      %c1_1: f32[1,4,4,2] = conv(%x, %w) {NHWC}
      %h2: f32[1,4,4,2] = add(%c1_1, %b)
      %h3: f32[1,4,4,2] = relu(%h2)
      %h4: f32[1,4,4,2] = add(%h3, %x)
      %c1b_1: f32[1,4,4,2] = conv(%x, %w1) {NHWC}
      %g2: f32[1,4,4,2] = sigmoid(%c1b_1)
      %h5: f32[1,4,4,4] = concat(%h4, %g2) {{axis=3}}
      %h6: f32[1,4,4,4] = mul(%s, %h5)
      %h7: f32[1,1,1,4] = reduce_max(%h6) {{axes=[1, 2], keepdims=true}}
      %y: f32[1,1,1,2] = conv(%h7, %w2) {NHWC}
      return %y
    }}
    """
    check_pass("layout{format=nhwc}", TF_STYLE, after)


def test_nhwc_cancels_the_transposes_between_nchw_only_ops() -> None:
    """conv 1's NCHW->NHWC transpose sinks through the bias add (the bias re-packed to
    [1,2,1,1] at compile time), the relu and the residual add of the NHWC input (whose NCHW
    copy %a the conv already made); conv 1b's through its sigmoid; both meet in the concat
    (now on axis 1), sink through the per-channel scale and the spatial max, and cancel with
    the transpose before conv 2. Five transposes become two: the graph's own borders. (The
    "convs" are conv_transposes here, which stay NCHW; see `_deconv`.)"""
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
    check_pass("layout{format=nhwc}", _deconv(TF_STYLE), _deconv(after))


def test_nhwc_reports_the_ops_that_stay_channels_first() -> None:
    ctx = PassContext(verify=True)
    run_pipeline(parse_graph(_deconv(TF_STYLE)), parse_pipeline("layout{format=nhwc}"), ctx)
    assert ctx.reports["layout"]["nchw_only"] == {"conv_transpose": 3}
    assert ctx.reports["layout"]["format"] == "nhwc"
    ctx = PassContext(verify=True)
    run_pipeline(parse_graph(TF_STYLE), parse_pipeline("layout{format=nhwc}"), ctx)
    assert ctx.reports["layout"]["nchw_only"] == {}
    assert ctx.reports["layout"]["to-nhwc"] == 3


def test_format_comes_from_the_target_capabilities() -> None:
    @dataclass(frozen=True)
    class Caps:
        preferred_layout: str = "nhwc"

    ctx = PassContext(verify=True, capabilities=Caps())
    out = run_pipeline(parse_graph(_deconv(TF_STYLE)), parse_pipeline("layout"), ctx)
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


W1 = [round(v, 2) for v in np.linspace(-1.0, 1.0, 54)]
W1_PACKED = np.asarray(W1, np.float32).reshape(3, 2, 3, 3).transpose(2, 3, 1, 0).ravel()


def _floats(vals: object) -> str:
    return "[" + ", ".join(repr(float(v)) for v in np.asarray(vals, np.float32).ravel()) + "]"


PAD1 = "{dilations=[1, 1], group=1, pads=[1, 1, 1, 1], strides=[1, 1]}"
POOL = "{ceil_mode=false, dilations=[1, 1], kernel=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2]}"
W2 = "[1.0, -1.0, 0.5, 2.0, 0.0, 1.0, -0.5, 1.5, 1.0, 0.25, -2.0, 1.0]"
W2_PACKED = "[1.0, 2.0, -0.5, 0.25, -1.0, 0.0, 1.5, -2.0, 0.5, 1.0, 1.0, 1.0]"


def _nhwc(attrs: str) -> str:
    return attrs.replace("group=1, ", 'group=1, layout="nhwc", ').replace(
        "kernel=[2, 2], ", 'kernel=[2, 2], layout="nhwc", '
    )


CHAIN = f"""
graph @g(%x: f32[1,2,5,5]) -> (%y) {{
  const %w1: f32[3,2,3,3] = dense<{_floats(W1)}>
  const %b1: f32[3] = dense<[0.25, -0.5, 0.75]>
  const %w2: f32[4,3,1,1] = dense<{W2}>
  %c1: f32[1,3,5,5] = conv(%x, %w1, %b1) {PAD1}
  %r: f32[1,3,5,5] = relu(%c1)
  %c2: f32[1,4,5,5] = conv(%r, %w2) {CONV}
  %y: f32[1,4,2,2] = max_pool(%c2) {POOL}
  return %y
}}
"""


def test_nhwc_region_has_transposes_only_at_its_borders() -> None:
    """conv -> relu -> conv -> max_pool becomes one channels-last region: conv 1's to-NCHW
    transpose sinks through the relu and cancels with conv 2's to-NHWC one, conv 2's with the
    pool's; what is left is one transpose in and one out. The weights are packed
    [kh, kw, C, M] at compile time (w1 re-laid out; w2, being 1x1, only reshaped), the bias is
    per channel in either layout."""
    after = f"""
    graph @g(%x: f32[1,2,5,5]) -> (%y) {{
      const %b1: f32[3] = dense<[0.25, -0.5, 0.75]>
      const %w1: f32[3,3,2,3] = dense<{_floats(W1_PACKED)}>
      const %w2: f32[1,1,3,4] = dense<{W2_PACKED}>
      %transpose: f32[1,5,5,2] = transpose(%x) {{perm=[0, 2, 3, 1]}}
      %c1_1: f32[1,5,5,3] = conv(%transpose, %w1, %b1) {_nhwc(PAD1)}
      %r: f32[1,5,5,3] = relu(%c1_1)
      %c2_1: f32[1,5,5,4] = conv(%r, %w2) {NHWC}
      %y_1: f32[1,2,2,4] = max_pool(%c2_1) {_nhwc(POOL)}
      %y: f32[1,4,2,2] = transpose(%y_1) {{perm=[0, 3, 1, 2]}}
      return %y
    }}
    """
    out = check_pass("layout{format=nhwc}", CHAIN, after)
    assert sum(n.op == "transpose" for n in out.nodes) == 2


def test_nhwc_grouped_conv_with_a_runtime_weight_and_avg_pool() -> None:
    """A weight that is a graph input cannot be packed at compile time: it keeps a transpose
    of its own. Depthwise and grouped convs, dilation, strides and avg_pool's divisor rules
    stay numerically equal (check_pass runs the interpreter before and after)."""
    depthwise = "{dilations=[1, 2], group=4, pads=[1, 1, 1, 1], strides=[2, 2]}"
    avg = (
        "{ceil_mode=true, count_include_pad=false, kernel=[2, 2], pads=[0, 1, 0, 0], "
        "strides=[2, 2]}"
    )
    grouped = CONV.replace("group=1", "group=2")
    before = f"""
    graph @g(%x: f32[2,4,7,6], %wd: f32[8,1,3,3], %wg: f32[6,4,2,2]) -> (%y) {{
      %d: f32[2,8,4,2] = conv(%x, %wd) {depthwise}
      %a: f32[2,8,2,2] = avg_pool(%d) {avg}
      %s: f32[2,8,2,2] = sigmoid(%a)
      %y: f32[2,6,1,1] = conv(%s, %wg) {grouped}
      return %y
    }}
    """
    out = check_pass("layout{format=nhwc}", before, None)
    ops = [n.op for n in out.nodes]
    assert ops.count("transpose") == 4  # x in, y out, and one per runtime weight
    spatial = [n for n in out.nodes if n.op in ("conv", "avg_pool")]
    assert len(spatial) == 3 and all(n.attrs["layout"] == "nhwc" for n in spatial)
