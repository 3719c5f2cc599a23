"""fold-batchnorm: golden tests with hand-checkable numbers, the cases that must not fold, and
numeric tests with random BN statistics (tiny variances included) within 1e-5 relative."""

from __future__ import annotations

import numpy as np
import pytest

from modelc.ir import GraphBuilder, TensorType
from modelc.ir.dtypes import f32
from modelc.ir.graph import Graph
from modelc.ir.interpreter import run_graph
from modelc.ir.printer import print_graph
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline
from modelc.testing import check_pass, random_inputs

CONV = "{dilations=[1, 1], group=1, pads=[0, 0, 0, 0], strides=[1, 1]}"


def test_conv_batchnorm_then_scale_and_shift_fold_into_one_conv() -> None:
    """k = scale / sqrt(var + eps) = [4/2, 1/1]; W' = W * k; b' = (0 - mean) * k + shift.
    Then * [0.5, 2] per channel scales W' and b', and + 1.0 shifts b'."""
    before = f"""
    graph @g(%x: f32[1,2,3,3]) -> (%y) {{
      const %w: f32[2,2,1,1] = dense<[1.0, 2.0, 3.0, 4.0]>
      const %scale: f32[2] = dense<[4.0, 1.0]>
      const %shift: f32[2] = dense<[0.5, -1.0]>
      const %mean: f32[2] = dense<[1.0, 2.0]>
      const %var: f32[2] = dense<[3.0, 0.0]>
      const %c: f32[1,2,1,1] = dense<[0.5, 2.0]>
      const %one: f32[] = dense<[1.0]>
      %conv: f32[1,2,3,3] = conv(%x, %w) {CONV}
      %bn: f32[1,2,3,3] = batch_norm(%conv, %scale, %shift, %mean, %var) {{epsilon=1.0}}
      %m: f32[1,2,3,3] = mul(%bn, %c)
      %a: f32[1,2,3,3] = add(%one, %m)
      %y: f32[1,2,3,3] = relu(%a)
      return %y
    }}
    """
    after = f"""
    graph @g(%x: f32[1,2,3,3]) -> (%y) {{
      const %w: f32[2,2,1,1] = dense<[1.0, 2.0, 6.0, 8.0]>    // folded weights keep the name
      const %w_bias: f32[2] = dense<[0.25, -5.0]>             // the conv had no bias
      %a: f32[1,2,3,3] = conv(%x, %w, %w_bias) {CONV}
      %y: f32[1,2,3,3] = relu(%a)
      return %y
    }}
    """
    check_pass("fold-batchnorm", before, after)


def test_linear_batchnorm_and_scales() -> None:
    """Gemm + BatchNorm1d: x @ W + b, normalized per feature (the last dim of a 2-D output);
    then a division and a subtraction per feature."""
    before = """
    graph @g(%x: f32[4,2]) -> (%y) {
      const %w: f32[2,2] = dense<[1.0, 2.0, 3.0, 4.0]>
      const %b: f32[2] = dense<[1.0, 1.0]>
      const %scale: f32[2] = dense<[2.0, 3.0]>
      const %shift: f32[2] = dense<[0.0, 1.0]>
      const %mean: f32[2] = dense<[1.0, 0.0]>
      const %var: f32[2] = dense<[0.0, 8.0]>
      const %d: f32[2] = dense<[2.0, 0.5]>
      const %s: f32[1,2] = dense<[1.0, 2.0]>
      %mm: f32[4,2] = matmul(%x, %w)
      %lin: f32[4,2] = add(%mm, %b)
      %bn: f32[4,2] = batch_norm(%lin, %scale, %shift, %mean, %var) {epsilon=1.0}
      %q: f32[4,2] = div(%bn, %d)
      %y: f32[4,2] = sub(%q, %s)
      return %y
    }
    """
    # k = [2/1, 3/3] = [2, 1]; W' = [[2, 2], [6, 4]]; b' = (b - mean) * k + shift = [0, 2]
    # / [2, 0.5]: W'' = [[1, 4], [3, 8]], b'' = [0, 4];  - [1, 2]: b''' = [-1, 2]
    after = """
    graph @g(%x: f32[4,2]) -> (%y) {
      const %w: f32[2,2] = dense<[1.0, 4.0, 3.0, 8.0]>
      const %b: f32[2] = dense<[-1.0, 2.0]>
      %mm: f32[4,2] = matmul(%x, %w)
      %y: f32[4,2] = add(%mm, %b)
      return %y
    }
    """
    check_pass("fold-batchnorm", before, after)


def test_what_does_not_fold() -> None:
    """A conv whose output is read elsewhere, run-time weights, a scale that varies over space,
    a BN after a 3-D matmul (axis 1 is not the features), a graph-output conv."""
    before = f"""
    graph @g(%x: f32[1,2,2,2], %wi: f32[2,2,1,1], %s: f32[2,3,2]) -> (%r1, %r2, %r3, %r4, %c1) {{
      const %w: f32[2,2,1,1] = dense<[1.0, 2.0, 3.0, 4.0]>
      const %p: f32[2] = dense<[1.0, 2.0]>
      const %sp: f32[1,1,2,2] = dense<[1.0, 2.0, 3.0, 4.0]>
      const %w2: f32[2,2] = dense<[1.0, 2.0, 3.0, 4.0]>
      const %p3: f32[3] = dense<[1.0, 2.0, 3.0]>
      %c1: f32[1,2,2,2] = conv(%x, %w) {CONV}
      %r1: f32[1,2,2,2] = batch_norm(%c1, %p, %p, %p, %p) {{epsilon=1e-05}}
      %c2: f32[1,2,2,2] = conv(%x, %wi) {CONV}
      %r2: f32[1,2,2,2] = batch_norm(%c2, %p, %p, %p, %p) {{epsilon=1e-05}}
      %c3: f32[1,2,2,2] = conv(%x, %w) {CONV}
      %r3: f32[1,2,2,2] = mul(%c3, %sp)
      %m: f32[2,3,2] = matmul(%s, %w2)
      %r4: f32[2,3,2] = batch_norm(%m, %p3, %p3, %p3, %p3) {{epsilon=1e-05}}
      return %r1, %r2, %r3, %r4, %c1
    }}
    """
    check_pass("fold-batchnorm", before, before)


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _fold_and_compare(g: Graph, rtol: float = 1e-5) -> Graph:
    ctx = PassContext(verify=True)
    out = run_pipeline(g, parse_pipeline("fold-batchnorm"), ctx)
    feeds = random_inputs(g, seed=3)
    want, got = run_graph(g, feeds), run_graph(out, feeds)
    for k in want:
        assert _rel_err(got[k], want[k]) <= rtol, (k, _rel_err(got[k], want[k]))
    # idempotent, and the text form survives
    assert print_graph(run_pipeline(out, parse_pipeline("fold-batchnorm"), ctx)) == print_graph(out)
    return out


def _bn_params(b: GraphBuilder, rng: np.random.Generator, c: int) -> list[str]:
    """Random BN statistics; a third of the variances are tiny (1e-6..1e-3), where
    1/sqrt(var + eps) is large and rounding the fold badly would show."""
    var = rng.uniform(0.1, 2.0, c)
    tiny = rng.random(c) < 0.34
    var[tiny] = 10.0 ** rng.uniform(-6, -3, tiny.sum())
    params = [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c), rng.normal(0, 0.5, c), var]
    return [b.add_constant(p.astype(np.float32), "bn") for p in params]


@pytest.mark.parametrize(
    "x_shape, w_shape, attrs, bias",
    [
        ((2, 8, 9, 9), (16, 8, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, False),
        ((1, 8, 7, 7), (8, 1, 3, 3), {"pads": [1, 1, 1, 1], "strides": [1, 1], "group": 8}, True),
        ((1, 4, 20), (6, 4, 5), {"pads": [2, 2], "strides": [1]}, True),
        ((1, 3, 4, 5, 6), (5, 3, 2, 2, 2), {"pads": [0] * 6, "strides": [1, 1, 1]}, False),
    ],
    ids=["conv2d-strided", "depthwise-bias", "conv1d", "conv3d"],
)
def test_conv_batchnorm_numerics(x_shape, w_shape, attrs, bias) -> None:
    rng = np.random.default_rng(sum(w_shape))
    b = GraphBuilder("g", fold=False)
    x = b.add_input("x", TensorType(x_shape, f32))
    w = b.add_constant(rng.normal(0, 0.5, w_shape).astype(np.float32), "w")
    inputs = [x, w]
    if bias:
        inputs.append(b.add_constant(rng.normal(0, 0.5, w_shape[0]).astype(np.float32), "b"))
    d = len(x_shape) - 2
    conv_attrs = {"dilations": [1] * d, "group": 1, **attrs}
    (y,) = b.add_node("conv", inputs, conv_attrs)
    y = b.add("batch_norm", y, *_bn_params(b, rng, w_shape[0]), epsilon=1e-5)
    scale = rng.uniform(0.5, 2, (w_shape[0],) + (1,) * d).astype(np.float32)
    y = b.add("mul", y, b.add_constant(scale, "s"))
    y = b.add("relu", y)
    b.set_outputs([y])
    out = _fold_and_compare(b.build())
    assert [n.op for n in out.nodes] == ["conv", "relu"]


def test_linear_batchnorm_numerics() -> None:
    rng = np.random.default_rng(7)
    b = GraphBuilder("g", fold=False)
    x = b.add_input("x", TensorType((5, 32), f32))
    w = b.add_constant(rng.normal(0, 0.3, (32, 24)).astype(np.float32), "w")
    bias = b.add_constant(rng.normal(0, 0.3, 24).astype(np.float32), "b")
    y = b.add("add", b.add("matmul", x, w), bias)
    y = b.add("batch_norm", y, *_bn_params(b, rng, 24), epsilon=1e-5)
    b.set_outputs([y])
    out = _fold_and_compare(b.build())
    assert [n.op for n in out.nodes] == ["matmul", "add"]
