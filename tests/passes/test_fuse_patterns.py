"""fuse-patterns: golden tests of each spelling of layer norm, GELU, softmax and attention the
frontend and the torch exporters produce, and the near misses that must stay unfused."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from modelc.frontend.onnx import load_onnx
from modelc.ir.printer import print_graph
from modelc.testing import check_pass

LN_FRONTEND = """
graph @g(%x: f32[2,3,4]) -> (%y) {
  const %eps: f32[] = dense<[1e-05]>
  const %gamma: f32[4] = dense<[1.0, 2.0, 3.0, 4.0]>
  const %beta: f32[4] = dense<[0.5, 0.5, -0.5, 0.0]>
  %mean: f32[2,3,1] = reduce_mean(%x) {axes=[2], keepdims=true}
  %d: f32[2,3,4] = sub(%x, %mean)
  %sq: f32[2,3,4] = mul(%d, %d)
  %var: f32[2,3,1] = reduce_mean(%sq) {axes=[2], keepdims=true}
  %ve: f32[2,3,1] = add(%var, %eps)
  %std: f32[2,3,1] = sqrt(%ve)
  %inv: f32[2,3,1] = reciprocal(%std)
  %n: f32[2,3,4] = mul(%d, %inv)
  %s: f32[2,3,4] = mul(%n, %gamma)
  %y: f32[2,3,4] = add(%s, %beta)
  return %y
}
"""


def test_layer_norm_as_the_frontend_decomposes_it() -> None:
    after = """
    graph @g(%x: f32[2,3,4]) -> (%y) {
      const %gamma: f32[4] = dense<[1.0, 2.0, 3.0, 4.0]>
      const %beta: f32[4] = dense<[0.5, 0.5, -0.5, 0.0]>
      %y: f32[2,3,4] = layer_norm(%x, %gamma, %beta) {axis=2, epsilon=1e-05}
      return %y
    }
    """
    check_pass("fuse-patterns", LN_FRONTEND, after)


def test_layer_norm_imported_from_onnx_fuses_back() -> None:
    """The frontend's own LayerNormalization decomposition (with its unused mean / inv_std
    outputs), normalizing the last two axes, becomes one node again."""
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-2, epsilon=1e-3)
    rng = np.random.default_rng(0)
    inits = [
        onnx.numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), n)
        for n in ("s", "b")
    ]
    graph = helper.make_graph(
        [node],
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    g = check_pass("fuse-patterns", print_graph(load_onnx(model.SerializeToString())), None)
    assert [(n.op, n.inputs, n.attrs["axis"]) for n in g.nodes] == [
        ("layer_norm", ("x", "s", "b"), 1)
    ]


def test_layer_norm_classic_export_without_affine() -> None:
    """ONNX < 17 exporters: Pow(d, 2) and Div(d, std); no gamma and beta."""
    before = """
    graph @g(%x: f32[3,8]) -> (%y) {
      const %two: f32[] = dense<[2.0]>
      const %eps: f32[] = dense<[0.001]>
      %mean: f32[3,1] = reduce_mean(%x) {axes=[1], keepdims=true}
      %d: f32[3,8] = sub(%x, %mean)
      %sq: f32[3,8] = pow(%d, %two)
      %var: f32[3,1] = reduce_mean(%sq) {axes=[1], keepdims=true}
      %ve: f32[3,1] = add(%eps, %var)
      %std: f32[3,1] = sqrt(%ve)
      %n: f32[3,8] = div(%d, %std)
      %y: f32[3,8] = relu(%n)
      return %y
    }
    """
    after = """
    graph @g(%x: f32[3,8]) -> (%y) {
      %n: f32[3,8] = layer_norm(%x) {axis=1, epsilon=0.001}
      %y: f32[3,8] = relu(%n)
      return %y
    }
    """
    check_pass("fuse-patterns", before, after)


def test_layer_norm_near_misses_stay() -> None:
    """Instance norm (axes [2, 3) with a per-channel gamma [3,1]: gamma does not broadcast
    over the normalized dims alone, so it stays a mul), a mean read elsewhere, and a variance
    over other axes than the mean."""
    before = """
    graph @g(%x: f32[2,3,4], %z: f32[2,3,4]) -> (%y, %mean, %y2) {
      const %eps: f32[] = dense<[1e-05]>
      const %g: f32[3,1] = dense<[1.0, 2.0, 3.0]>
      %m1: f32[2,3,1] = reduce_mean(%x) {axes=[2], keepdims=true}
      %d1: f32[2,3,4] = sub(%x, %m1)
      %v1: f32[2,3,1] = reduce_mean(%d1) {axes=[2], keepdims=true}
      %e1: f32[2,3,1] = add(%v1, %eps)
      %s1: f32[2,3,1] = sqrt(%e1)
      %n1: f32[2,3,4] = div(%d1, %s1)
      %y: f32[2,3,4] = mul(%n1, %g)
      %mean: f32[2,3,1] = reduce_mean(%z) {axes=[2], keepdims=true}
      %d2: f32[2,3,4] = sub(%z, %mean)
      %q2: f32[2,3,4] = mul(%d2, %d2)
      %v2: f32[2,3,1] = reduce_mean(%q2) {axes=[2], keepdims=true}
      %e2: f32[2,3,1] = add(%v2, %eps)
      %s2: f32[2,3,1] = sqrt(%e2)
      %y2: f32[2,3,4] = div(%d2, %s2)
      return %y, %mean, %y2
    }
    """
    # the first chain is not a layer norm at all (no square): only checks nothing breaks
    check_pass("fuse-patterns", before, before)
    instance = LN_FRONTEND.replace(
        "%gamma: f32[4] = dense<[1.0, 2.0, 3.0, 4.0]>", "%gamma: f32[3,1] = dense<[1.0, 2.0, 3.0]>"
    )
    g = check_pass("fuse-patterns", instance, None)
    assert [n.op for n in g.nodes] == ["layer_norm", "mul", "add"]


GELU_ERF_LEGACY = """
graph @g(%x: f32[2,5]) -> (%y) {
  const %sqrt2: f32[] = dense<[1.4142135381698608]>
  const %one: f32[] = dense<[1.0]>
  const %half: f32[] = dense<[0.5]>
  %a: f32[2,5] = div(%x, %sqrt2)
  %e: f32[2,5] = erf(%a)
  %p: f32[2,5] = add(%e, %one)
  %m: f32[2,5] = mul(%x, %p)
  %y: f32[2,5] = mul(%m, %half)
  return %y
}
"""


def test_gelu_erf_legacy_torch_form() -> None:
    after = """
    graph @g(%x: f32[2,5]) -> (%y) {
      %y: f32[2,5] = gelu(%x) {approximate="none"}
      return %y
    }
    """
    check_pass("fuse-patterns", GELU_ERF_LEGACY, after)


def test_gelu_tanh_form_and_near_miss() -> None:
    before = """
    graph @g(%x: f32[6]) -> (%y, %z) {
      const %three: f32[] = dense<[3.0]>
      const %c: f32[] = dense<[0.044715]>
      const %k: f32[] = dense<[0.7978845834732056]>
      const %one: f32[] = dense<[1.0]>
      const %half: f32[] = dense<[0.5]>
      const %not_half: f32[] = dense<[0.6]>
      %x3: f32[6] = pow(%x, %three)
      %cx3: f32[6] = mul(%c, %x3)
      %in: f32[6] = add(%x, %cx3)
      %ki: f32[6] = mul(%in, %k)
      %t: f32[6] = tanh(%ki)
      %p: f32[6] = add(%one, %t)
      %h: f32[6] = mul(%half, %x)
      %y: f32[6] = mul(%h, %p)
      %x3b: f32[6] = pow(%x, %three)
      %cx3b: f32[6] = mul(%c, %x3b)
      %inb: f32[6] = add(%x, %cx3b)
      %kib: f32[6] = mul(%inb, %k)
      %tb: f32[6] = tanh(%kib)
      %pb: f32[6] = add(%one, %tb)
      %hb: f32[6] = mul(%not_half, %x)
      %z: f32[6] = mul(%hb, %pb)
      return %y, %z
    }
    """
    g = check_pass("fuse-patterns", before, None)
    assert [n.op for n in g.nodes][0] == "gelu" and g.nodes[0].attrs["approximate"] == "tanh"
    assert [n.op for n in g.nodes].count("gelu") == 1  # 0.6 * x * (...) is not a GELU


def test_softmax_spellings() -> None:
    before = """
    graph @g(%x: f32[2,3,5]) -> (%a, %b, %c) {
      %mx: f32[2,3,1] = reduce_max(%x) {axes=[2], keepdims=true}
      %sh: f32[2,3,5] = sub(%x, %mx)
      %e: f32[2,3,5] = exp(%sh)
      %s: f32[2,3,1] = reduce_sum(%e) {axes=[2], keepdims=true}
      %a: f32[2,3,5] = div(%e, %s)
      %e2: f32[2,3,5] = exp(%x)
      %s2: f32[1,3,5] = reduce_sum(%e2) {axes=[0], keepdims=true}
      %r2: f32[1,3,5] = reciprocal(%s2)
      %b: f32[2,3,5] = mul(%r2, %e2)
      %mx3: f32[2,1,5] = reduce_max(%x) {axes=[1], keepdims=true}
      %sh3: f32[2,3,5] = sub(%x, %mx3)
      %e3: f32[2,3,5] = exp(%sh3)
      %s3: f32[2,3,1] = reduce_sum(%e3) {axes=[2], keepdims=true}
      %c: f32[2,3,5] = div(%e3, %s3)
      return %a, %b, %c
    }
    """
    after = """
    graph @g(%x: f32[2,3,5]) -> (%a, %b, %c) {
      %a: f32[2,3,5] = softmax(%x) {axis=2}
      %b: f32[2,3,5] = softmax(%x) {axis=0}
      %mx3: f32[2,1,5] = reduce_max(%x) {axes=[1], keepdims=true}  // max over another axis:
      %sh3: f32[2,3,5] = sub(%x, %mx3)                              // still a softmax of sh3
      %c: f32[2,3,5] = softmax(%sh3) {axis=2}
      return %a, %b, %c
    }
    """
    check_pass("fuse-patterns", before, after)


ATTENTION_LEGACY = """
graph @g(%q: f32[2,3,4,8], %k: f32[2,3,6,8], %v: f32[2,3,6,5]) -> (%out) {
  const %s1: f32[] = dense<[0.5]>
  const %s2: f32[] = dense<[0.25]>
  %kt: f32[2,3,8,6] = transpose(%k) {perm=[0, 1, 3, 2]}
  %qs: f32[2,3,4,8] = mul(%q, %s1)
  %ks: f32[2,3,8,6] = mul(%kt, %s2)
  %sc: f32[2,3,4,6] = matmul(%qs, %ks)
  %p: f32[2,3,4,6] = softmax(%sc) {axis=3}
  %out: f32[2,3,4,5] = matmul(%p, %v)
  return %out
}
"""


def test_attention_legacy_export_form() -> None:
    """torch's legacy exporter: sqrt(scale) on q and on k^T, a transpose of k."""
    after = """
    graph @g(%q: f32[2,3,4,8], %k: f32[2,3,6,8], %v: f32[2,3,6,5]) -> (%out) {
      %out: f32[2,3,4,5] = attention(%q, %k, %v) {scale=0.125}
      return %out
    }
    """
    check_pass("fuse-patterns", ATTENTION_LEGACY, after)


def test_attention_dynamo_form_with_mask_and_divided_scores() -> None:
    """torch's dynamo exporter: k^T is a reshape of a transposed [B*H, S, D] tensor; here
    the scores are also divided by a scalar and a mask [4, 6] is added."""
    before = """
    graph @g(%q: f32[2,3,4,8], %k3: f32[6,6,8], %v: f32[2,3,6,5], %mask: f32[4,6]) -> (%out) {
      const %d: f32[] = dense<[4.0]>
      %kt3: f32[6,8,6] = transpose(%k3) {perm=[0, 2, 1]}
      %kt: f32[2,3,8,6] = reshape(%kt3) {shape=[2, 3, 8, 6]}
      %sc: f32[2,3,4,6] = matmul(%q, %kt)
      %scd: f32[2,3,4,6] = div(%sc, %d)
      %m: f32[2,3,4,6] = add(%mask, %scd)
      %p: f32[2,3,4,6] = softmax(%m) {axis=3}
      %out: f32[2,3,4,5] = matmul(%p, %v)
      return %out
    }
    """
    after = """
    graph @g(%q: f32[2,3,4,8], %k3: f32[6,6,8], %v: f32[2,3,6,5], %mask: f32[4,6]) -> (%out) {
      %reshape: f32[2,3,6,8] = reshape(%k3) {shape=[2, 3, 6, 8]}
      %out: f32[2,3,4,5] = attention(%q, %reshape, %v, %mask) {scale=0.25}
      return %out
    }
    """
    check_pass("fuse-patterns", before, after)


def test_attention_whose_probabilities_are_read_stays() -> None:
    text = ATTENTION_LEGACY.replace("-> (%out)", "-> (%out, %p)").replace(
        "return %out", "return %out, %p"
    )
    check_pass("fuse-patterns", text, text)


def test_rules_can_be_disabled() -> None:
    check_pass("fuse-patterns{disable=gelu-erf}", GELU_ERF_LEGACY, GELU_ERF_LEGACY)
