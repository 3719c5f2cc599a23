"""fold-qdq: golden before/after tests in text form, idempotence and the numbers (through the
interpreter, within one output LSB: the integer path rounds once in fixed point where the QDQ
float graph rounds its float result), plus what the pass leaves alone."""

from __future__ import annotations

import pytest

from modelc.errors import PipelineError
from modelc.ir.parser import parse_graph
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline
from modelc.testing import check_pass

# DQ(x), DQ(w) per channel, DQ(int32 bias) -> conv -> relu -> Q, then DQ -> max_pool -> Q.
CONV_BEFORE = """
graph @qdq(%x: f32[1,2,4,4]) -> (%y) {
  const %w: i8[3,2,1,1] = dense<[1, -2, 3, 4, -5, 6]>
  const %b: i32[3] = dense<[10, -20, 30]>
  %xq: u8[1,2,4,4] quant<scale=[0.5], zp=[10], axis=none, bits=8> = quantize(%x) {axis=none, scale=[0.5], to=!u8, zero_point=[10]}
  %xd: f32[1,2,4,4] = dequantize(%xq) {axis=none, scale=[0.5], to=!f32, zero_point=[10]}
  %wd: f32[3,2,1,1] = dequantize(%w) {axis=0, scale=[0.25, 0.125, 0.5], to=!f32, zero_point=[0, 0, 0]}
  %bd: f32[3] = dequantize(%b) {axis=0, scale=[0.125, 0.0625, 0.25], to=!f32, zero_point=[0, 0, 0]}
  %c: f32[1,3,4,4] = conv(%xd, %wd, %bd) {dilations=[1, 1], group=1, pads=[0, 0, 0, 0], strides=[1, 1]}
  %r: f32[1,3,4,4] = relu(%c)
  %rq: u8[1,3,4,4] quant<scale=[0.1], zp=[5], axis=none, bits=8> = quantize(%r) {axis=none, scale=[0.1], to=!u8, zero_point=[5]}
  %rd: f32[1,3,4,4] = dequantize(%rq) {axis=none, scale=[0.1], to=!f32, zero_point=[5]}
  %p: f32[1,3,2,2] = max_pool(%rd) {ceil_mode=false, dilations=[1, 1], kernel=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2]}
  %pq: u8[1,3,2,2] quant<scale=[0.1], zp=[5], axis=none, bits=8> = quantize(%p) {axis=none, scale=[0.1], to=!u8, zero_point=[5]}
  %y: f32[1,3,2,2] = dequantize(%pq) {axis=none, scale=[0.1], to=!f32, zero_point=[5]}
  return %y
}
"""  # noqa: E501  (golden IR text: lines as long as the printer makes them)

# The multipliers are x_scale * w_scale / y_scale = 1.25, 0.625, 2.5: one Q0.31 fraction 0.625
# and shifts 1, 0, 2. ReLU became the clamp's low end (the output zero point, 5).
CONV_AFTER = """
graph @qdq(%x: f32[1,2,4,4]) -> (%y) {
  const %w: i8[3,2,1,1] quant<scale=[0.25, 0.125, 0.5], zp=[0, 0, 0], axis=0, bits=8, symmetric> = dense<[1, -2, 3, 4, -5, 6]>
  const %b: i32[3] quant<scale=[0.125, 0.0625, 0.25], zp=[0, 0, 0], axis=0, bits=32, symmetric> = dense<[10, -20, 30]>
  const %rq.multiplier: i32[1,3,1,1] = dense<[1342177280, 1342177280, 1342177280]>
  const %rq.shift: i32[1,3,1,1] = dense<[1, 0, 2]>
  %xq: u8[1,2,4,4] quant<scale=[0.5], zp=[10], axis=none, bits=8> = quantize(%x) {axis=none, scale=[0.5], to=!u8, zero_point=[10]}
  %rq.acc: i32[1,3,4,4] quant<scale=[0.125, 0.0625, 0.25], zp=[0, 0, 0], axis=1, bits=32, symmetric> = qconv(%xq, %w, %b) {dilations=[1, 1], group=1, pads=[0, 0, 0, 0], strides=[1, 1], w_zero_point=[0], x_zero_point=10}
  %rq: u8[1,3,4,4] quant<scale=[0.1], zp=[5], axis=none, bits=8> = requantize(%rq.acc, %rq.multiplier, %rq.shift) {input_zero_point=0, max=none, min=5, rounding="single", scale=0.1, to=!u8, zero_point=5}
  %pq: u8[1,3,2,2] quant<scale=[0.1], zp=[5], axis=none, bits=8> = max_pool(%rq) {ceil_mode=false, dilations=[1, 1], kernel=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2]}
  %y: f32[1,3,2,2] = dequantize(%pq) {axis=none, scale=[0.1], to=!f32, zero_point=[5]}
  return %y
}

"""  # noqa: E501  (golden IR text: lines as long as the printer makes them)

# Gemm as the ONNX frontend imports it (transB: transpose of the weight, C: add of the bias),
# a concat of differently quantized inputs, and an add, which has no integer form here.
GEMM_BEFORE = """
graph @gemm(%x: f32[2,4], %z: f32[2,3]) -> (%y, %s) {
  const %w: i8[3,4] = dense<[1, -2, 3, 4, -5, 6, 7, -8, 9, 10, -11, 12]>
  const %b: i32[3] = dense<[100, -200, 300]>
  %xq: i8[2,4] quant<scale=[0.5], zp=[-1], axis=none, bits=8> = quantize(%x) {axis=none, scale=[0.5], to=!i8, zero_point=[-1]}
  %xd: f32[2,4] = dequantize(%xq) {axis=none, scale=[0.5], to=!f32, zero_point=[-1]}
  %wd: f32[3,4] = dequantize(%w) {axis=0, scale=[0.25, 0.125, 0.5], to=!f32, zero_point=[0, 0, 0]}
  %wt: f32[4,3] = transpose(%wd) {perm=[1, 0]}
  %mm: f32[2,3] = matmul(%xd, %wt)
  %bd: f32[3] = dequantize(%b) {axis=0, scale=[0.125, 0.0625, 0.25], to=!f32, zero_point=[0, 0, 0]}
  %g: f32[2,3] = add(%mm, %bd)
  %gq: i8[2,3] quant<scale=[0.2], zp=[3], axis=none, bits=8> = quantize(%g) {axis=none, scale=[0.2], to=!i8, zero_point=[3]}
  %gd: f32[2,3] = dequantize(%gq) {axis=none, scale=[0.2], to=!f32, zero_point=[3]}
  %zq: i8[2,3] quant<scale=[0.05], zp=[0], axis=none, bits=8> = quantize(%z) {axis=none, scale=[0.05], to=!i8, zero_point=[0]}
  %zd: f32[2,3] = dequantize(%zq) {axis=none, scale=[0.05], to=!f32, zero_point=[0]}
  %cat: f32[2,6] = concat(%gd, %zd) {axis=1}
  %catq: i8[2,6] quant<scale=[0.2], zp=[3], axis=none, bits=8> = quantize(%cat) {axis=none, scale=[0.2], to=!i8, zero_point=[3]}
  %y: f32[2,6] = dequantize(%catq) {axis=none, scale=[0.2], to=!f32, zero_point=[3]}
  %sum: f32[2,3] = add(%gd, %zd)
  %sq: i8[2,3] quant<scale=[0.1], zp=[0], axis=none, bits=8> = quantize(%sum) {axis=none, scale=[0.1], to=!i8, zero_point=[0]}
  %s: f32[2,3] = dequantize(%sq) {axis=none, scale=[0.1], to=!f32, zero_point=[0]}
  return %y, %s
}
"""  # noqa: E501  (golden IR text: lines as long as the printer makes them)

GEMM_AFTER = """
graph @gemm(%x: f32[2,4], %z: f32[2,3]) -> (%y, %s) {
  const %b: i32[3] quant<scale=[0.125, 0.0625, 0.25], zp=[0, 0, 0], axis=0, bits=32, symmetric> = dense<[100, -200, 300]>
  const %w.T: i8[4,3] quant<scale=[0.25, 0.125, 0.5], zp=[0, 0, 0], axis=1, bits=8, symmetric> = dense<[1, -5, 9, -2, 6, 10, 3, 7, -11, 4, -8, 12]>
  const %gq.multiplier: i32[1,3] = dense<[1342177280, 1342177280, 1342177280]>
  const %gq.shift: i32[1,3] = dense<[0, -1, 1]>
  const %zq.rescaled.multiplier: i32[] = dense<[1073741824]>
  const %zq.rescaled.shift: i32[] = dense<[-1]>
  %xq: i8[2,4] quant<scale=[0.5], zp=[-1], axis=none, bits=8> = quantize(%x) {axis=none, scale=[0.5], to=!i8, zero_point=[-1]}
  %gq.acc: i32[2,3] quant<scale=[0.125, 0.0625, 0.25], zp=[0, 0, 0], axis=1, bits=32, symmetric> = qmatmul(%xq, %w.T, %b) {a_zero_point=-1, b_zero_point=[0]}
  %gq: i8[2,3] quant<scale=[0.2], zp=[3], axis=none, bits=8> = requantize(%gq.acc, %gq.multiplier, %gq.shift) {input_zero_point=0, max=none, min=none, rounding="single", scale=0.2, to=!i8, zero_point=3}
  %gd: f32[2,3] = dequantize(%gq) {axis=none, scale=[0.2], to=!f32, zero_point=[3]}
  %zq: i8[2,3] quant<scale=[0.05], zp=[0], axis=none, bits=8> = quantize(%z) {axis=none, scale=[0.05], to=!i8, zero_point=[0]}
  %zd: f32[2,3] = dequantize(%zq) {axis=none, scale=[0.05], to=!f32, zero_point=[0]}
  %zq.rescaled: i8[2,3] quant<scale=[0.2], zp=[3], axis=none, bits=8> = requantize(%zq, %zq.rescaled.multiplier, %zq.rescaled.shift) {input_zero_point=0, max=none, min=none, rounding="single", scale=0.2, to=!i8, zero_point=3}
  %catq: i8[2,6] quant<scale=[0.2], zp=[3], axis=none, bits=8> = concat(%gq, %zq.rescaled) {axis=1}
  %y: f32[2,6] = dequantize(%catq) {axis=none, scale=[0.2], to=!f32, zero_point=[3]}
  %sum: f32[2,3] = add(%gd, %zd)
  %sq: i8[2,3] quant<scale=[0.1], zp=[0], axis=none, bits=8> = quantize(%sum) {axis=none, scale=[0.1], to=!i8, zero_point=[0]}
  %s: f32[2,3] = dequantize(%sq) {axis=none, scale=[0.1], to=!f32, zero_point=[0]}
  return %y, %s
}

"""  # noqa: E501  (golden IR text: lines as long as the printer makes them)


def test_conv_relu_max_pool() -> None:
    check_pass("fold-qdq", CONV_BEFORE, CONV_AFTER, atol=0.1 + 1e-6)


def test_gemm_concat_and_a_float_island() -> None:
    check_pass("fold-qdq", GEMM_BEFORE, GEMM_AFTER, atol=0.2 + 1e-6)


def test_single_rounding_option() -> None:
    after = check_pass("fold-qdq{rounding=single}", CONV_BEFORE, None, atol=0.1 + 1e-6)
    assert {n.attrs["rounding"] for n in after.nodes if n.op == "requantize"} == {"single"}
    with pytest.raises(PipelineError, match="rounding"):
        parse_pipeline("fold-qdq{rounding=up}")


def test_reports_what_it_rewrote() -> None:
    ctx = PassContext()
    run_pipeline(parse_graph(GEMM_BEFORE), parse_pipeline("fold-qdq"), ctx)
    assert ctx.reports["fold-qdq"] == {"qmatmul": 1, "concat": 1}


@pytest.mark.parametrize(
    "old, new",
    [
        ("%bd: f32[3] = dequantize(%b)", "%bd: f32[3] = neg(%b2)"),  # a float bias
        ("scale=[0.125, 0.0625, 0.25]", "scale=[0.125, 0.0625, 0.26]"),  # bias scale is off
        ("%r: f32[1,3,4,4] = relu(%c)", "%r: f32[1,3,4,4] = sigmoid(%c)"),  # no integer form
    ],
)
def test_patterns_it_leaves_float(old: str, new: str) -> None:
    before = CONV_BEFORE.replace(old, new)
    if "%b2" in before:
        before = before.replace(
            "  const %b: i32[3]", "  const %b2: f32[3] = dense<[1.0, 2.0, 3.0]>\n  const %b: i32[3]"
        )
        before = before.replace(
            " {axis=0, scale=[0.125, 0.0625, 0.25], to=!f32, zero_point=[0, 0, 0]}\n  %c", "\n  %c"
        )
    after = check_pass("fold-qdq", before, None, atol=0.1 + 1e-6)
    assert "conv" in [n.op for n in after.nodes]
    assert "qconv" not in [n.op for n in after.nodes]


def test_a_graph_without_qdq_is_returned_as_is() -> None:
    g = parse_graph("graph @g(%x: f32[4]) -> (%y) {\n  %y: f32[4] = relu(%x)\n  return %y\n}")
    assert run_pipeline(g, parse_pipeline("fold-qdq"), PassContext()) is g
