"""fuse-epilogue: golden before/after text (with idempotence and interpreter numerics through
`check_pass`), the `act` option, the cases that must not fuse, and compiled models against the
interpreter."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

import modelc
from modelc.errors import PipelineError
from modelc.ir import Attrs, TensorType, all_ops, register_op
from modelc.ir import loop as L
from modelc.ir.interpreter import run_graph
from modelc.ir.opdef import OUT_FUSABLE, LowerRequest, OpDef
from modelc.ir.ops.common import params_for
from modelc.ir.parser import parse_graph
from modelc.passes.registry import format_pipeline, parse_pipeline
from modelc.targets.cpu import CPU_PIPELINE
from modelc.testing import check_pass, random_inputs

CONV_ATTRS = "{dilations=[1, 1], group=1, pads=[1, 1, 1, 1], strides=[1, 1]}"

RESIDUAL = f"""
graph @g(%x: f32[1,2,5,5], %w: f32[3,2,3,3], %b: f32[3,1,1], %z: f32[1,3,5,5]) -> (%y) {{
  %c: f32[1,3,5,5] = conv(%x, %w) {CONV_ATTRS}
  %r: f32[1,3,5,5] = sigmoid(%z)              // the residual is computed after the conv
  %s: f32[1,3,5,5] = add(%c, %b)              // per-channel bias
  %t: f32[1,3,5,5] = add(%s, %r)              // residual add
  %y: f32[1,3,5,5] = clip(%t) {{max=6.0, min=0.0}}
  return %y
}}
"""


def test_bias_residual_and_activation_fuse_into_the_conv() -> None:
    """The fused node takes the place of its last member, after the residual's producer, so the
    graph stays in SSA order."""
    after = f"""
    graph @g(%x: f32[1,2,5,5], %w: f32[3,2,3,3], %b: f32[3,1,1], %z: f32[1,3,5,5]) -> (%y) {{
      %r: f32[1,3,5,5] = sigmoid(%z)
      %y: f32[1,3,5,5] = fused(%x, %w, %b, %r) {{kind="epilogue",
          body=graph @conv_add_add_clip(%x: f32[1,2,5,5], %w: f32[3,2,3,3], %b: f32[3,1,1],
                                        %r: f32[1,3,5,5]) -> (%y) {{
        %c: f32[1,3,5,5] = conv(%x, %w) {CONV_ATTRS}
        %s: f32[1,3,5,5] = add(%c, %b)
        %t: f32[1,3,5,5] = add(%s, %r)
        %y: f32[1,3,5,5] = clip(%t) {{max=6.0, min=0.0}}
        return %y
      }}}}
      return %y
    }}
    """
    check_pass("fuse-epilogue", RESIDUAL, after)


def test_act_limits_the_activations() -> None:
    after = f"""
    graph @g(%x: f32[1,2,5,5], %w: f32[3,2,3,3], %b: f32[3,1,1], %z: f32[1,3,5,5]) -> (%y) {{
      %r: f32[1,3,5,5] = sigmoid(%z)
      %t: f32[1,3,5,5] = fused(%x, %w, %b, %r) {{kind="epilogue",
          body=graph @conv_add_add(%x: f32[1,2,5,5], %w: f32[3,2,3,3], %b: f32[3,1,1],
                                   %r: f32[1,3,5,5]) -> (%t) {{
        %c: f32[1,3,5,5] = conv(%x, %w) {CONV_ATTRS}
        %s: f32[1,3,5,5] = add(%c, %b)
        %t: f32[1,3,5,5] = add(%s, %r)
        return %t
      }}}}
      %y: f32[1,3,5,5] = clip(%t) {{max=6.0, min=0.0}}
      return %y
    }}
    """
    check_pass("fuse-epilogue{act=relu,sigmoid}", RESIDUAL, after)
    check_pass("fuse-epilogue{act=none}", RESIDUAL, after)


def test_act_option_parses_as_a_comma_list() -> None:
    (p,) = parse_pipeline("fuse-epilogue{act=relu,clip,gelu}")
    assert p.act == "relu,clip,gelu"  # type: ignore[attr-defined]
    assert format_pipeline([p]) == "fuse-epilogue{act=relu,clip,gelu}"
    with pytest.raises(PipelineError, match="not elementwise ops"):
        parse_pipeline("fuse-epilogue{act=relu,conv}")
    with pytest.raises(PipelineError, match="not key=value"):
        parse_pipeline("fuse-epilogue{relu}")


MLP = """
graph @mlp(%x: f32[4,6], %w1: f32[6,8], %b1: f32[8], %w2: f32[8,3], %b2: f32[3]) -> (%y) {
  %m1: f32[4,8] = matmul(%x, %w1)
  %a1: f32[4,8] = add(%m1, %b1)
  %h: f32[4,8] = gelu(%a1) {approximate="tanh"}
  %m2: f32[4,3] = matmul(%h, %w2)
  %a2: f32[4,3] = add(%b2, %m2)
  %y: f32[4,3] = tanh(%a2)
  return %y
}
"""


def test_matmul_bias_activation() -> None:
    after = """
    graph @mlp(%x: f32[4,6], %w1: f32[6,8], %b1: f32[8], %w2: f32[8,3], %b2: f32[3]) -> (%y) {
      %h: f32[4,8] = fused(%x, %w1, %b1) {kind="epilogue",
          body=graph @matmul_add_gelu(%x: f32[4,6], %w1: f32[6,8], %b1: f32[8]) -> (%h) {
        %m1: f32[4,8] = matmul(%x, %w1)
        %a1: f32[4,8] = add(%m1, %b1)
        %h: f32[4,8] = gelu(%a1) {approximate="tanh"}
        return %h
      }}
      %y: f32[4,3] = fused(%h, %w2, %b2) {kind="epilogue",
          body=graph @matmul_add_tanh(%h: f32[4,8], %w2: f32[8,3], %b2: f32[3]) -> (%y) {
        %m2: f32[4,3] = matmul(%h, %w2)
        %a2: f32[4,3] = add(%b2, %m2)
        %y: f32[4,3] = tanh(%a2)
        return %y
      }}
      return %y
    }
    """
    check_pass("fuse-epilogue", MLP, after)


def test_diamonds_fuse() -> None:
    """silu written out, y * sigmoid(y): the anchor's value has two users, both in the group."""
    before = f"""
    graph @g(%x: f32[1,2,4,4], %w: f32[2,2,3,3]) -> (%y) {{
      %c: f32[1,2,4,4] = conv(%x, %w) {CONV_ATTRS}
      %s: f32[1,2,4,4] = sigmoid(%c)
      %y: f32[1,2,4,4] = mul(%c, %s)
      return %y
    }}
    """
    g = check_pass("fuse-epilogue", before, None)
    assert [n.op for n in g.nodes] == ["fused"]
    assert [n.op for n in g.nodes[0].attrs["body"].nodes] == ["conv", "sigmoid", "mul"]


@pytest.mark.parametrize(
    "tail",
    [
        # the anchor's raw value is needed elsewhere
        "%y: f32[1,2,4,4] = relu(%c)\n %o: f32[1,2,4,4] = neg(%c)\n return %y, %o",
        "%y: f32[1,2,4,4] = relu(%c)\n %o: f32[1,2,4,4] = neg(%y)\n return %c, %o",
        # epilogue ops keep the anchor's shape and dtype
        "%y: f32[2,2,4,4] = add(%c, %z)\n %o: f32[1,2,4,4] = neg(%x)\n return %y, %o",
        "%y: i32[1,2,4,4] = cast(%c) {to=!i32}\n %o: f32[1,2,4,4] = neg(%x)\n return %y, %o",
    ],
    ids=["raw value used twice", "raw value returned", "shape grows", "dtype changes"],
)
def test_what_does_not_fuse(tail: str) -> None:
    before = f"""
    graph @g(%x: f32[1,2,4,4], %w: f32[2,2,3,3], %z: f32[2,2,4,4]) -> (%y, %o) {{
      %c: f32[1,2,4,4] = conv(%x, %w) {CONV_ATTRS}
      {tail}
    }}
    """
    before = before.replace("-> (%y, %o)", "-> (%c, %o)") if "return %c" in tail else before
    check_pass("fuse-epilogue", before, before)


def test_epilogue_stops_where_an_intermediate_leaves() -> None:
    """%s is read outside: the group ends at %s, the last point where one value leaves it."""
    before = f"""
    graph @g(%x: f32[1,2,4,4], %w: f32[2,2,3,3], %b: f32[2,1,1]) -> (%y, %o) {{
      %c: f32[1,2,4,4] = conv(%x, %w) {CONV_ATTRS}
      %s: f32[1,2,4,4] = add(%c, %b)
      %y: f32[1,2,4,4] = relu(%s)
      %o: f32[1,2,4,4] = reduce_sum(%s) {{axes=[], keepdims=true}}
      return %y, %o
    }}
    """
    g = check_pass(
        "fuse-epilogue", before.replace("%o: f32[1,2,4,4] =", "%o: f32[1,1,1,1] ="), None
    )
    assert [n.op for n in g.nodes] == ["fused", "relu", "reduce_sum"]


# ---- an out-fusable op whose lowering ignores epilogues is left alone ---------------------------


def _lower_ignoring_epilogue(req: LowerRequest) -> L.Kernel:
    i = L.Var("i")
    body = L.For(
        i, L.Const(0), L.Const(req.out_types[0].size), L.Store("out0", i, L.Load("in0", i))
    )
    return L.Kernel(req.kernel_name, params_for(req), body)


def _same(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    assert types[0] is not None
    return [types[0]]


if "test_heavy_copy" not in all_ops():
    register_op(
        OpDef(
            "test_heavy_copy",
            infer=_same,
            reference=lambda xs, a: [np.array(xs[0])],
            traits=frozenset({OUT_FUSABLE}),
            lower=_lower_ignoring_epilogue,
        )
    )


def test_anchors_must_apply_the_epilogue() -> None:
    before = """
    graph @g(%x: f32[8]) -> (%y) {
      %c: f32[8] = test_heavy_copy(%x)
      %y: f32[8] = relu(%c)
      return %y
    }
    """
    check_pass("fuse-epilogue", before, before)


# ---- compiled ----------------------------------------------------------------------------------

NET = f"""
graph @net(%x: f32[1,3,8,8], %w1: f32[4,3,3,3], %b1: f32[4], %w2: f32[4,4,3,3],
           %s2: f32[4,1,1], %w3: f32[4,3,1,1], %fc: f32[4,5], %fb: f32[5]) -> (%y) {{
  %c1: f32[1,4,8,8] = conv(%x, %w1, %b1) {CONV_ATTRS}
  %r1: f32[1,4,8,8] = relu(%c1)
  %c2: f32[1,4,8,8] = conv(%r1, %w2) {CONV_ATTRS}
  %m2: f32[1,4,8,8] = mul(%c2, %s2)
  %c3: f32[1,4,8,8] = conv(%x, %w3) {{dilations=[1, 1], group=1, pads=[0, 0, 0, 0],
                                      strides=[1, 1]}}
  %a: f32[1,4,8,8] = add(%m2, %c3)
  %r2: f32[1,4,8,8] = hard_swish(%a)
  %p: f32[1,4,1,1] = reduce_mean(%r2) {{axes=[2, 3], keepdims=true}}
  %f: f32[1,4] = reshape(%p) {{shape=[1, 4]}}
  %mm: f32[1,5] = matmul(%f, %fc)
  %l: f32[1,5] = add(%mm, %fb)
  %e: f32[1,5] = exp(%l)
  %y: f32[1,5] = mul(%e, %l)
  return %y
}}
"""


def test_compiled_network_matches_the_interpreter() -> None:
    """The default cpu pipeline: conv+relu, conv+scale+residual(conv)+hard_swish, matmul+bias
    +exp+mul: four compute kernels, one reduction, no elementwise kernel left."""
    names = CPU_PIPELINE.split(",")
    assert (
        names.index("fuse-epilogue")
        < names.index("fuse-elementwise")
        < names.index("lower-to-loops")
    )
    g = parse_graph(NET)
    lib = modelc.compile(g, target="cpu", verify=True)
    feeds = random_inputs(g, seed=2)
    np.testing.assert_allclose(lib.run(feeds)["y"], run_graph(g, feeds)["y"], atol=1e-5, rtol=1e-5)
    assert lib.manifest["launches"] == 5
    assert (lib.path / "model.ir").read_text().count(" = fused(") == 3
