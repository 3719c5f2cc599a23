"""fuse-elementwise: golden before/after text (with idempotence and interpreter numerics through
`check_pass`), the fused kernels compiled with the C compiler against the interpreter, and
random graphs for the properties no golden covers (SSA order, no cycles between groups)."""

from __future__ import annotations

import numpy as np
import pytest

import modelc
from modelc.ir.dtypes import f32
from modelc.ir.graph import Graph, GraphBuilder
from modelc.ir.interpreter import run_graph
from modelc.ir.parser import parse_graph
from modelc.ir.types import TensorType
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline
from modelc.testing import check_pass, random_inputs

COMPILE = "fuse-elementwise,lower-to-loops,plan-memory"


def compiled_matches_interpreter(graph: Graph | str, pipeline: str = COMPILE) -> dict:
    """Compile `graph` with `pipeline` for cpu, run it, compare with the interpreter (bit-exact
    for integers); returns the manifest."""
    g = parse_graph(graph) if isinstance(graph, str) else graph
    lib = modelc.compile(g, target="cpu", pipeline=pipeline, verify=True)
    feeds = random_inputs(g, seed=1)
    want = run_graph(g, feeds)
    got = lib.run(feeds)
    for name, w in want.items():
        if w.dtype.kind == "f":
            np.testing.assert_allclose(got[name], w, atol=1e-5, rtol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], w, err_msg=name)
    return lib.manifest


CHAIN = """
graph @g(%x: f32[2,8], %b: f32[8], %z: f32[2,8]) -> (%y, %u) {
  const %two: f32[] = dense<[2.0]>
  %s: f32[2,8] = add(%x, %b)
  %m: f32[2,8] = mul(%s, %two)
  %r: f32[2,8] = relu(%m)
  %u: f32[2,1] = reduce_sum(%r) {axes=[1], keepdims=true}
  %e: f32[2,8] = sub(%r, %z)
  %y: f32[2,8] = sigmoid(%e)
  return %y, %u
}
"""


def test_chain_with_broadcast_and_a_value_used_outside() -> None:
    """%r is read by the reduction too: it becomes a second output of the one kernel; the
    reduction moves after the fused node; the scalar constant moves into the body."""
    after = """
    graph @g(%x: f32[2,8], %b: f32[8], %z: f32[2,8]) -> (%y, %u) {
      %r, %y: f32[2,8], f32[2,8] = fused(%x, %b, %z) {kind="elementwise",
          body=graph @add_mul_relu_sub_sigmoid(%x: f32[2,8], %b: f32[8], %z: f32[2,8])
              -> (%r, %y) {
        const %two: f32[] = dense<[2.0]>
        %s: f32[2,8] = add(%x, %b)
        %m: f32[2,8] = mul(%s, %two)
        %r: f32[2,8] = relu(%m)
        %e: f32[2,8] = sub(%r, %z)
        %y: f32[2,8] = sigmoid(%e)
        return %r, %y
      }}
      %u: f32[2,1] = reduce_sum(%r) {axes=[1], keepdims=true}
      return %y, %u
    }
    """
    check_pass("fuse-elementwise", CHAIN, after)
    manifest = compiled_matches_interpreter(CHAIN)
    assert manifest["launches"] == 2


def test_single_output_groups_end_where_a_value_leaves() -> None:
    after = """
    graph @g(%x: f32[2,8], %b: f32[8], %z: f32[2,8]) -> (%y, %u) {
      %r: f32[2,8] = fused(%x, %b) {kind="elementwise",
          body=graph @add_mul_relu(%x: f32[2,8], %b: f32[8]) -> (%r) {
        const %two: f32[] = dense<[2.0]>
        %s: f32[2,8] = add(%x, %b)
        %m: f32[2,8] = mul(%s, %two)
        %r: f32[2,8] = relu(%m)
        return %r
      }}
      %u: f32[2,1] = reduce_sum(%r) {axes=[1], keepdims=true}
      %y: f32[2,8] = fused(%r, %z) {kind="elementwise",
          body=graph @sub_sigmoid(%r: f32[2,8], %z: f32[2,8]) -> (%y) {
        %e: f32[2,8] = sub(%r, %z)
        %y: f32[2,8] = sigmoid(%e)
        return %y
      }}
      return %y, %u
    }
    """
    check_pass("fuse-elementwise{multi_output=false}", CHAIN, after)


def test_chain_ending_in_graph_outputs() -> None:
    before = """
    graph @g(%x: i32[5]) -> (%y, %z) {
      %y: i32[5] = abs(%x)
      %z: i32[5] = mul(%y, %y)
      return %y, %z
    }
    """
    after = """
    graph @g(%x: i32[5]) -> (%y, %z) {
      %y, %z: i32[5], i32[5] = fused(%x) {kind="elementwise",
          body=graph @abs_mul(%x: i32[5]) -> (%y, %z) {
        %y: i32[5] = abs(%x)
        %z: i32[5] = mul(%y, %y)
        return %y, %z
      }}
      return %y, %z
    }
    """
    check_pass("fuse-elementwise", before, after)
    compiled_matches_interpreter(before)


DIAMOND = """
graph @g(%x: f32[3,4], %c: bool[3,4]) -> (%d) {
  %a: f32[3,4] = tanh(%x)
  %b: f32[3,4] = sigmoid(%a)
  %n: f32[3,4] = neg(%a)
  %w: f32[3,4] = where(%c, %b, %n)
  %d: f32[3,4] = add(%w, %a)
  return %d
}
"""


def test_diamonds_fuse_and_shared_values_are_computed_once() -> None:
    g = check_pass("fuse-elementwise", DIAMOND, None)
    assert [n.op for n in g.nodes] == ["fused"]
    program = run_pipeline(g, parse_pipeline("lower-to-loops"), PassContext())
    text = str(program)
    assert text.count("tanh(") == 1 and "let fz0: f32 = tanh(in0[i0])" in text
    compiled_matches_interpreter(DIAMOND)


def test_reductions_end_groups() -> None:
    """Decomposed softmax: exp(x - max) is one kernel; the division cannot join it, because it
    reads the sum of that very kernel's output (a cycle), and two reductions never fuse."""
    before = """
    graph @softmax(%x: f32[2,8]) -> (%y) {
      %m: f32[2,1] = reduce_max(%x) {axes=[1], keepdims=true}
      %d: f32[2,8] = sub(%x, %m)
      %e: f32[2,8] = exp(%d)
      %s: f32[2,1] = reduce_sum(%e) {axes=[1], keepdims=true}
      %y: f32[2,8] = div(%e, %s)
      return %y
    }
    """
    after = """
    graph @softmax(%x: f32[2,8]) -> (%y) {
      %m: f32[2,1] = reduce_max(%x) {axes=[1], keepdims=true}
      %e: f32[2,8] = fused(%x, %m) {kind="elementwise",
          body=graph @sub_exp(%x: f32[2,8], %m: f32[2,1]) -> (%e) {
        %d: f32[2,8] = sub(%x, %m)
        %e: f32[2,8] = exp(%d)
        return %e
      }}
      %s: f32[2,1] = reduce_sum(%e) {axes=[1], keepdims=true}
      %y: f32[2,8] = div(%e, %s)
      return %y
    }
    """
    check_pass("fuse-elementwise", before, after)
    compiled_matches_interpreter(before)


VIEWS = """
graph @g(%x: f32[2,3,4], %s: f32[4], %t: f32[6,1]) -> (%b, %q, %k) {
  %a: f32[2,3,4] = mul(%x, %s)
  %n: f32[2,3,4] = neg(%a)
  %r: f32[6,4] = reshape(%n) {shape=[6, 4]}
  %b: f32[6,4] = mul(%r, %t)
  %e: f32[2,3,4] = exp(%x)
  %v: f32[24] = reshape(%e) {shape=[24]}
  %q: f32[24] = sigmoid(%v)
  %h: f32[2,3,4] = abs(%x)
  %o: f32[2,3,4] = sqrt(%h)
  %k: f32[24] = reshape(%o) {shape=[24]}
  return %b, %q, %k
}
"""


def test_views_glue_groups_only_where_index_math_stays_simple() -> None:
    """A reshape between elementwise ops joins their group (the flat order is unchanged); a
    group whose broadcasting ops would need two loop shapes is split instead (%a reads %s at
    shape [2,3,4], %b reads %t at [6,4]); a reshape that ends a chain stays a free view."""
    after = """
    graph @g(%x: f32[2,3,4], %s: f32[4], %t: f32[6,1]) -> (%b, %q, %k) {
      %a: f32[2,3,4] = mul(%x, %s)
      %b: f32[6,4] = fused(%a, %t) {kind="elementwise",
          body=graph @neg_reshape_mul(%a: f32[2,3,4], %t: f32[6,1]) -> (%b) {
        %n: f32[2,3,4] = neg(%a)
        %r: f32[6,4] = reshape(%n) {shape=[6, 4]}
        %b: f32[6,4] = mul(%r, %t)
        return %b
      }}
      %q: f32[24] = fused(%x) {kind="elementwise",
          body=graph @exp_reshape_sigmoid(%x: f32[2,3,4]) -> (%q) {
        %e: f32[2,3,4] = exp(%x)
        %v: f32[24] = reshape(%e) {shape=[24]}
        %q: f32[24] = sigmoid(%v)
        return %q
      }}
      %o: f32[2,3,4] = fused(%x) {kind="elementwise",
          body=graph @abs_sqrt(%x: f32[2,3,4]) -> (%o) {
        %h: f32[2,3,4] = abs(%x)
        %o: f32[2,3,4] = sqrt(%h)
        return %o
      }}
      %k: f32[24] = reshape(%o) {shape=[24]}
      return %b, %q, %k
    }
    """
    check_pass("fuse-elementwise", VIEWS, after)
    compiled_matches_interpreter(VIEWS)


def test_lone_ops_and_other_ops_are_left_alone() -> None:
    before = """
    graph @g(%x: f32[1,2,4,4], %w: f32[2,2,1,1]) -> (%y) {
      %r: f32[1,2,4,4] = relu(%x)
      %c: f32[1,2,4,4] = conv(%r, %w) {dilations=[1, 1], group=1, pads=[0, 0, 0, 0],
                                       strides=[1, 1]}
      %y: f32[1,2,2,2] = max_pool(%c) {ceil_mode=false, dilations=[1, 1], kernel=[2, 2],
                                       pads=[0, 0, 0, 0], strides=[2, 2]}
      return %y
    }
    """
    check_pass("fuse-elementwise", before, before)


def test_narrow_integer_chains_stay_bit_exact() -> None:
    """i8 arithmetic wraps after each op; the fused kernel must too (it casts between ops)."""
    text = """
    graph @g(%a: i8[4,16], %b: i8[16]) -> (%y) {
      const %k: i8[] = dense<[77]>
      %s: i8[4,16] = add(%a, %b)
      %m: i8[4,16] = mul(%s, %k)
      %c: i32[4,16] = cast(%m) {to=!i32}
      %y: i32[4,16] = sub(%c, %c)
      return %y
    }
    """
    g = check_pass("fuse-elementwise", text, None)
    assert [n.op for n in g.nodes] == ["fused"]
    g0 = parse_graph(text)
    lib = modelc.compile(g0, target="cpu", pipeline=COMPILE)
    rng = np.random.default_rng(3)
    feeds = {
        "a": rng.integers(-128, 128, (4, 16)).astype(np.int8),
        "b": rng.integers(-128, 128, 16).astype(np.int8),
    }
    np.testing.assert_array_equal(lib.run(feeds)["y"], run_graph(g0, feeds)["y"])


# ---- random graphs -----------------------------------------------------------------------------

UNARY = ("relu", "neg", "tanh", "sigmoid", "abs", "exp")
BINARY = ("add", "mul", "sub", "max")


def random_graph(seed: int) -> Graph:
    """Elementwise ops over [2,3,4] values, with per-row values made by reductions (operands
    that broadcast), views, and several outputs: enough structure for multi-output groups,
    diamonds and reductions between groups."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"r{seed}", fold=False)
    full = [
        b.add_input("x", TensorType((2, 3, 4), f32)),
        b.add_input("y", TensorType((2, 3, 4), f32)),
    ]
    rows: list[str] = []
    for _ in range(int(rng.integers(6, 16))):
        pick = rng.random()
        if pick < 0.12:
            rows.append(b.add("reduce_sum", str(rng.choice(full)), axes=[2], keepdims=True))
        elif pick < 0.2:
            v = b.add("reshape", str(rng.choice(full)), shape=[6, 4])
            full.append(b.add("reshape", b.add("neg", v), shape=[2, 3, 4]))
        elif pick < 0.5:
            full.append(b.add(str(rng.choice(UNARY)), str(rng.choice(full))))
        else:
            other = rows + full if rows and rng.random() < 0.3 else full
            full.append(
                b.add(str(rng.choice(BINARY)), str(rng.choice(full)), str(rng.choice(other)))
            )
    used = {i for n in b.nodes for i in n.inputs}
    outs = [v for v in full + rows if v not in used and v not in ("x", "y")]
    b.set_outputs(outs or [full[-1]])
    return b.build()


@pytest.mark.parametrize("multi_output", [True, False], ids=["multi", "single"])
def test_random_graphs_stay_in_order_and_compute_the_same(multi_output: bool) -> None:
    from modelc.ir.printer import print_graph

    fused = 0
    for seed in range(120):
        g = random_graph(seed)
        text = print_graph(g)
        out = check_pass(
            f"fuse-elementwise{{multi_output={str(multi_output).lower()}}}", text, None, atol=1e-5
        )
        fused += sum(n.op == "fused" for n in out.nodes)
    assert fused > 100  # the generator does make groups


def test_random_graphs_compile() -> None:
    for seed in (3, 7, 11, 19):
        compiled_matches_interpreter(random_graph(seed))
