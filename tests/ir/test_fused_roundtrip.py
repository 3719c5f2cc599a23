"""The `fused` op: nested-graph attributes print, parse, hash and verify; the reference runs the
body; lowerings of both kinds, compiled with the C compiler, match the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from modelc.errors import VerifyError
from modelc.ir import Attrs, Graph, Node
from modelc.ir.interpreter import run_graph
from modelc.ir.parser import parse_graph
from modelc.ir.printer import print_graph, print_kernel
from modelc.ir.verify import verify
from modelc.testing import check_lowering, lower_op, random_inputs

RNG = np.random.default_rng(0)

FUSED = """\
graph @g(%x: f32[2,8], %b: f32[8]) -> (%y, %s) {
  %s, %y: f32[2,8], f32[2,8] = fused(%x, %b) {kind="elementwise", body=graph @add_mul_relu(%x: f32[2,8], %b: f32[8]) -> (%s, %y) {
    const %h: f32[] = dense<[0.5]>
    %s: f32[2,8] = add(%x, %b) loc("Add_0")
    %m: f32[2,8] = mul(%s, %h)
    %y: f32[2,8] = relu(%m) loc("Relu_2")
    return %s, %y
  }} loc("Add_0+Relu_2")
  return %y, %s
}
"""  # noqa: E501  (a golden text: the node line is as long as the printer makes it)

EPILOGUE = """\
graph @g(%x: f32[1,3,6,6], %w: f32[4,3,3,3], %b: f32[4,1,1], %r: f32[1,4,3,3]) -> (%y) {
  %y: f32[1,4,3,3] = fused(%x, %w, %b, %r) {kind="epilogue", body=graph @conv_add_add_relu(%x: f32[1,3,6,6], %w: f32[4,3,3,3], %b: f32[4,1,1], %r: f32[1,4,3,3]) -> (%y) {
    %c: f32[1,4,3,3] = conv(%x, %w) {dilations=[1, 1], group=1, pads=[1, 1, 1, 1], strides=[2, 2]}
    %s: f32[1,4,3,3] = add(%c, %b)
    %t: f32[1,4,3,3] = add(%r, %s)
    %y: f32[1,4,3,3] = relu(%t)
    return %y
  }}
  return %y
}
"""  # noqa: E501


@pytest.mark.parametrize("text", [FUSED, EPILOGUE], ids=["elementwise", "epilogue"])
def test_golden_text_round_trips(text: str) -> None:
    g = parse_graph(text)
    verify(g)
    assert print_graph(g) == text
    assert parse_graph(print_graph(g)) == g
    assert hash(parse_graph(text)) == hash(g)


def test_nested_graphs_nest_and_elide() -> None:
    """A body inside a body indents one more level; elided printing reaches into bodies. (The
    text form allows any nesting; the fused kinds themselves hold no fused nodes.)"""
    inner = parse_graph(FUSED)
    node = inner.nodes[0]
    wrapped = Node("fused", node.inputs, node.outputs, Attrs(kind="elementwise", body=inner))
    outer = inner.replace(name="outer", nodes=(wrapped,))
    text = print_graph(outer)
    assert "\n    %s, %y: f32[2,8], f32[2,8] = fused" in text  # the inner fused node, indented
    assert "\n      %m: f32[2,8] = mul(%s, %h)" in text  # its body, one level deeper
    assert parse_graph(text) == outer
    assert "dense<[0.5]>" in print_graph(outer, constants="elide")


def test_attrs_take_graphs_and_compare_them_structurally() -> None:
    body = parse_graph(FUSED).nodes[0].attrs["body"]
    same = parse_graph(print_graph(body))
    assert Attrs(kind="elementwise", body=body) == Attrs(body=same, kind="elementwise")
    assert hash(Attrs(body=body)) == hash(Attrs(body=same))
    assert Attrs(body=body) != Attrs(body=body.replace(name="other"))


def test_reference_runs_the_body() -> None:
    g = parse_graph(FUSED)
    body = g.nodes[0].attrs["body"]
    feeds = random_inputs(g)
    want = run_graph(body, feeds)
    got = run_graph(g, feeds)
    np.testing.assert_array_equal(got["y"], want["y"])
    np.testing.assert_array_equal(got["s"], want["s"])


GROWS = """\
graph @g(%a: f32[3,5], %b: f32[5,4], %r: f32[2,3,4]) -> (%y) {
  %y: f32[2,3,4] = fused(%a, %b, %r) {kind="epilogue", body=graph @mm(%a: f32[3,5], %b: f32[5,4], %r: f32[2,3,4]) -> (%y) {
    %m: f32[3,4] = matmul(%a, %b)
    %y: f32[2,3,4] = add(%m, %r)
    return %y
  }}
  return %y
}
"""  # noqa: E501

BROKEN = [
    # a body that is not well formed is reported with the node that holds it
    (FUSED.replace("mul(%s, %h)", "mul(%q, %h)"), "in its body graph"),
    # the node's input types must be the body's
    (FUSED.replace("%b: f32[8]) -> (%y, %s)", "%b: f32[2,8]) -> (%y, %s)"), "input 1"),
    (FUSED.replace('kind="elementwise"', 'kind="mystery"'), "unknown kind"),
    # only single-element constants live in a body
    (
        FUSED.replace("%h: f32[] = dense<[0.5]>", "%h: f32[2] = dense<[0.5, 1.0]>").replace(
            "mul(%s, %h)", "mul(%s, %s)"
        ),
        "single elements",
    ),
    # an elementwise body holds elementwise ops only
    (FUSED.replace("relu(%m)", "softmax(%m) {axis=1}"), "not an elementwise op"),
    (EPILOGUE.replace('kind="epilogue"', 'kind="elementwise"'), "not an elementwise op"),
    # epilogue ops keep the anchor's shape (they finish its buffer in place)
    (GROWS, "keep the anchor"),
]


@pytest.mark.parametrize("text, message", BROKEN)
def test_verifier_checks_bodies(text: str, message: str) -> None:
    with pytest.raises(VerifyError, match=message):
        verify(parse_graph(text))


# ---- lowerings, compiled -------------------------------------------------------------------------


def _arrays(body: Graph, seed: int = 0) -> list[np.ndarray]:
    return list(random_inputs(body, seed).values())


def check_body(kind: str, text: str, **tol: float) -> str:
    """Compile the `fused` node of this body and compare it with the interpreter; returns the
    kernel's pseudo-code for assertions about its shape."""
    body = parse_graph(text)
    verify(body)
    attrs = {"kind": kind, "body": body}
    check_lowering("fused", _arrays(body), attrs, **tol)
    kernel, _ = lower_op("fused", _arrays(body), attrs)
    return print_kernel(kernel)


def test_elementwise_lowering_is_one_loop_with_shared_values_bound_once() -> None:
    code = check_body("elementwise", print_graph(parse_graph(FUSED).nodes[0].attrs["body"]))
    assert code.count("for ") == 2  # i0 over rows, i1 over the broadcast bias's dim
    assert "let fz0: f32 = in0[i0 * 8 + i1] + in1[i1]" in code  # %s: stored and read again
    assert "let fz1: f32 = max(fz0 * 0.5, 0.0)" in code  # the constant became a literal
    # with several outputs every value is computed before the first store (in-place safe)
    assert code.endswith("out0[i0 * 8 + i1] = fz0\n      out1[i0 * 8 + i1] = fz1\n")


def test_elementwise_lowering_views_and_multiple_outputs() -> None:
    code = check_body(
        "elementwise",
        """graph @f(%x: f32[2,3,4], %y: f32[24]) -> (%e, %z) {
          %e: f32[2,3,4] = exp(%x)
          %r: f32[24] = reshape(%e) {shape=[24]}
          %z: f32[24] = mul(%r, %y)
          return %e, %z
        }""",
    )
    assert code.count("for ") == 1  # no operand broadcasts: one flat loop


def test_elementwise_lowering_rounds_narrow_ints_like_the_unfused_ops() -> None:
    """i8 arithmetic wraps after every op (numpy, and the unfused kernels); C would compute the
    chain in int, so the fused expression casts back between ops."""
    body = parse_graph(
        """graph @f(%a: i8[64], %b: i8[64]) -> (%z) {
          const %k: i8[] = dense<[3]>
          %s: i8[64] = add(%a, %b)
          %m: i8[64] = mul(%s, %k)
          %z: i8[64] = sub(%m, %a)
          return %z
        }"""
    )
    a = RNG.integers(-128, 128, 64).astype(np.int8)
    b = RNG.integers(-128, 128, 64).astype(np.int8)
    check_lowering("fused", [a, b], {"kind": "elementwise", "body": body})


def test_elementwise_lowering_broadcast_shapes_and_where() -> None:
    check_body(
        "elementwise",
        """graph @f(%x: f32[2,3,4], %c: bool[3,1], %s: f32[4]) -> (%y) {
          %a: f32[2,3,4] = mul(%x, %s)
          %n: f32[2,3,4] = neg(%a)
          %y: f32[2,3,4] = where(%c, %a, %n)
          return %y
        }""",
    )


CONV = """graph @g(%x: f32[{x}], %w: f32[{w}], %b: f32[{m}], %c: f32[{cb}], %r: f32[{o}]) -> (%y) {{
  %v: f32[{o}] = conv(%x, %w, %b) {{dilations=[{dil}], group={g}, pads=[{pads}], strides=[{s}]}}
  %p: f32[{o}] = mul(%v, %c)
  %q: f32[{o}] = add(%p, %r)
  %y: f32[{o}] = hard_swish(%q)
  return %y
}}"""

CONVS = {
    "3x3 pad stride2": dict(x="2,3,9,9", w="4,3,3,3", m=4, cb="4,1,1", o="2,4,5,5",
                            dil="1, 1", g=1, pads="1, 1, 1, 1", s="2, 2"),
    "1x1 dense": dict(x="1,8,5,5", w="6,8,1,1", m=6, cb="6,1,1", o="1,6,5,5",
                      dil="1, 1", g=1, pads="0, 0, 0, 0", s="1, 1"),
    "depthwise dilated": dict(x="1,4,7,7", w="4,1,3,3", m=4, cb="1", o="1,4,3,3",
                              dil="2, 2", g=4, pads="0, 0, 0, 0", s="1, 1"),
    "1-d": dict(x="1,2,10", w="3,2,3", m=3, cb="3,1", o="1,3,10",
                dil="1", g=1, pads="1, 1", s="1"),
    "3-d": dict(x="1,2,4,4,4", w="2,2,2,2,2", m=2, cb="2,1,1,1", o="1,2,3,3,3",
                dil="1, 1, 1", g=1, pads="0, 0, 0, 0, 0, 0", s="1, 1, 1"),
}  # fmt: skip


@pytest.mark.parametrize("case", CONVS, ids=list(CONVS))
def test_conv_epilogue_applies_once_per_plane(case: str) -> None:
    code = check_body("epilogue", CONV.format(**CONVS[case]))
    # the plane is finished in place right after its accumulation, in the (n, oc) loop
    last = code.rstrip().splitlines()[-1]
    assert last.startswith("      out0[ob + p] = fz0 * min(max(") and code.count("min(max(") == 1


MATMULS = {
    "batched bias": ("2,3,5", "5,4", "2,3,4", "4"),
    "broadcast batch": ("2,1,3,5", "3,5,4", "2,3,3,4", "3,1,4"),
    "matrix-vector": ("3,5", "5", "3", "3"),
    "vector-matrix": ("5", "5,4", "4", "4"),
    "residual": ("3,5", "5,4", "3,4", "3,4"),
}


@pytest.mark.parametrize("case", MATMULS, ids=list(MATMULS))
def test_matmul_epilogue(case: str) -> None:
    a, b, o, c = MATMULS[case]
    check_body(
        "epilogue",
        f"""graph @g(%a: f32[{a}], %b: f32[{b}], %c: f32[{c}]) -> (%y) {{
          %m: f32[{o}] = matmul(%a, %b)
          %s: f32[{o}] = add(%m, %c)
          %y: f32[{o}] = silu(%s)
          return %y
        }}""",
    )


def test_epilogue_renames_anchor_buffers() -> None:
    """The anchor's operands may repeat or come after the epilogue's in the input list."""
    code = check_body(
        "epilogue",
        """graph @g(%r: f32[4,4], %a: f32[4,4]) -> (%y) {
          %m: f32[4,4] = matmul(%a, %a)
          %y: f32[4,4] = add(%m, %r)
          return %y
        }""",
    )
    assert "in1[ao + k]" in code and "in1[bo + k * 4 + j]" in code  # a is input 1, twice
    assert "in0[co + j]" in code  # the residual, input 0
