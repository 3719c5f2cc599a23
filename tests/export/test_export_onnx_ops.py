"""Every ONNX exporter against the IR's own semantics.

Each case builds a small graph IR, exports it (`to_onnx`, checked with onnx.checker full
shape inference), runs the file in onnxruntime and compares with the reference interpreter on
the same seeded inputs: float outputs within 1e-5, integer / bool outputs exactly. The cases
cover every op `exportable_ops()` lists (a test checks that), and the attribute forms the IR
normalizes differently from ONNX (NHWC layouts, clamped negative-step slices, empty axes,
absent layer_norm scale, resize by sizes, float Python-style mod, int4 / int32 / f16 quant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modelc.export import ExportError, exportable_ops, to_onnx
from modelc.export import onnx_export as X
from modelc.ir import dtypes as D
from modelc.ir.graph import Graph, GraphBuilder
from modelc.ir.interpreter import run_graph
from modelc.ir.ops.nn import nhwc_weight_perm
from modelc.ir.types import TensorType
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline

RNG_SEED = 0
Build = Callable[[GraphBuilder], list[str]]


@dataclass(frozen=True)
class Case:
    build: Build
    atol: float = 1e-5
    # onnx's shape inference keeps a ceil_mode pool's last window when it starts in the end
    # padding; onnxruntime and the IR drop it, so those cases skip the checker's inference
    shape_inference: bool = True


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _x(b: GraphBuilder, shape: tuple[int, ...], dt: D.DType = D.f32, name: str = "x") -> str:
    return b.add_input(name, TensorType(shape, dt))


def _unary(op: str, positive: bool = False, **attrs: object) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        x = _x(b, (2, 3, 4))
        if positive:
            x = b.add("add", b.add("abs", x), b.add_constant(np.float32(0.5)))
        return [b.add(op, x, **attrs)]

    return Case(build)


def _binary(op: str, positive: bool = False) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        x, y = _x(b, (2, 3, 4)), _x(b, (3, 1), name="y")
        if positive:
            x = b.add("add", b.add("abs", x), b.add_constant(np.float32(0.5)))
        return [b.add(op, x, y)]

    return Case(build)


def _compare(op: str) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        x, y = _x(b, (2, 3, 4)), _x(b, (3, 1), name="y")
        return [b.add(op, x, y)]

    return Case(build)


def _logic(op: str) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        p, q = _x(b, (4, 5), D.boolean, "p"), _x(b, (4, 5), D.boolean, "q")
        return [b.add(op, p, q)]

    return Case(build)


def _conv(layout: str = "nchw", group: int = 1, bias: bool = True) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        rng = np.random.default_rng(1)
        w = _w(rng, 6, 4 // group, 3, 3)
        x_shape = (1, 4, 9, 9)
        attrs: dict[str, object] = {
            "strides": [2, 1],
            "pads": [1, 0, 1, 2],
            "dilations": [1, 2],
            "group": group,
        }
        if layout == "nhwc":
            w = np.ascontiguousarray(w.transpose(nhwc_weight_perm(4)))
            x_shape = (1, 9, 9, 4)
            attrs["layout"] = "nhwc"
        ins = [_x(b, x_shape), b.add_constant(w, "w")]
        if bias:
            ins.append(b.add_constant(_w(rng, 6), "b"))
        return [b.add("conv", *ins, **attrs)]

    return Case(build)


def _pool(op: str, layout: str = "nchw", **extra: object) -> Case:
    ceil = bool(extra.get("ceil_mode"))

    def build(b: GraphBuilder) -> list[str]:
        shape = (1, 7, 8, 3) if layout == "nhwc" else (1, 3, 7, 8)
        attrs: dict[str, object] = {"kernel": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1]}
        if layout == "nhwc":
            attrs["layout"] = "nhwc"
        attrs.update(extra)
        if op == "max_pool":
            attrs.setdefault("dilations", [1, 1])
        return [b.add(op, _x(b, shape), **attrs)]

    return Case(build, shape_inference=not ceil)


def _reduce(op: str, axes: list[int], keepdims: bool) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        return [b.add(op, _x(b, (2, 3, 4)), axes=axes, keepdims=keepdims)]

    return Case(build)


def _slice(starts: list[int], ends: list[int], steps: list[int]) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        return [b.add("slice", _x(b, (5, 6)), starts=starts, ends=ends, steps=steps)]

    return Case(build)


def _pad(mode: str, pads: list[int]) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        return [b.add("pad", _x(b, (3, 4)), pads=pads, mode=mode, value=1.5)]

    return Case(build)


def _qdq(to: D.DType, axis: int | None, shape: tuple[int, ...] = (2, 3, 4)) -> Case:
    """quantize then dequantize; both the integers and the floats are outputs (only the
    floats for 4-bit types, which onnxruntime's Python binding cannot return)."""

    def build(b: GraphBuilder) -> list[str]:
        n = 1 if axis is None else shape[axis]
        scale = [0.05 * (k + 1) for k in range(n)]
        zp = (
            [int(to.min) + 3 + k for k in range(n)]
            if to.kind == "uint"
            else [k - 1 for k in range(n)]
        )
        a = {"scale": scale, "zero_point": zp, "axis": axis}
        q = b.add("quantize", _x(b, shape), to=to, **a)
        dq = b.add("dequantize", q, to=D.f32, **a)
        return [dq] if to.bits == 4 else [q, dq]

    return Case(build)


def _dq_weight(dt: D.DType) -> Case:
    """A per-channel weight DQ feeding a conv (how int4 / int8 weights are exported)."""

    def build(b: GraphBuilder) -> list[str]:
        rng = np.random.default_rng(2)
        lo, hi = int(dt.min), int(dt.max)
        wq = rng.integers(lo, hi + 1, (4, 3, 3, 3)).astype(np.int8)
        w = b.add_constant(wq, "w_int", TensorType(wq.shape, dt))
        a = {"scale": [0.1, 0.2, 0.05, 0.3], "zero_point": [0, 0, 0, 0], "axis": 0}
        wf = b.add("dequantize", w, to=D.f32, **a)
        bq = b.add_constant(rng.integers(-500, 500, 4).astype(np.int32), "b_int32")
        bf = b.add("dequantize", bq, to=D.f32, **{**a, "scale": [0.001, 0.002, 0.003, 0.004]})
        conv = {"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1]}
        return [b.add("conv", _x(b, (1, 3, 5, 5)), wf, bf, **conv)]

    return Case(build)


def _build_simple(op: str, x_shape: tuple[int, ...], **attrs: object) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        return [b.add(op, _x(b, x_shape), **attrs)]

    return Case(build)


def _float_mod(fmod: bool) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        x = b.add("mul", _x(b, (3, 4)), b.add_constant(np.float32(5)))
        y = b.add_constant(np.array([1.5, -2.0, 3.0, -0.75], np.float32), "y")
        return [b.add("mod", x, y, fmod=fmod)]

    return Case(build)


def _int_mod(b: GraphBuilder) -> list[str]:
    y = b.add_constant(np.array([3, -4, 5], np.int32), "y")
    return [b.add("mod", _x(b, (2, 3), D.i32), y, fmod=False)]


def _where(b: GraphBuilder) -> list[str]:
    x, y = _x(b, (3, 4)), _x(b, (4,), name="y")
    return [b.add("where", b.add("greater", x, y), x, y)]


def _clip(lo: float, hi: float) -> Case:
    return _build_simple("clip", (3, 4), min=lo, max=hi)


def _cast(b: GraphBuilder) -> list[str]:
    x = b.add("mul", _x(b, (3, 4)), b.add_constant(np.float32(10)))
    i = b.add("cast", x, to=D.i32)
    return [i, b.add("cast", i, to=D.f16)]


def _matmul(b: GraphBuilder) -> list[str]:
    return [b.add("matmul", _x(b, (2, 3, 4, 5)), _x(b, (3, 5, 6), name="y"))]


def _conv_transpose(b: GraphBuilder) -> list[str]:
    rng = np.random.default_rng(3)
    w = b.add_constant(_w(rng, 4, 3, 3, 3), "w")
    bias = b.add_constant(_w(rng, 3), "b")
    attrs = {
        "strides": [2, 2],
        "pads": [1, 0, 0, 1],
        "dilations": [1, 1],
        "output_padding": [1, 0],
    }
    return [b.add("conv_transpose", _x(b, (1, 4, 5, 5)), w, bias, **attrs)]


def _batch_norm(b: GraphBuilder) -> list[str]:
    rng = np.random.default_rng(4)
    p = [b.add_constant(_w(rng, 3), n) for n in ("s", "bias", "mean")]
    var = b.add_constant(np.abs(_w(rng, 3)) + 0.5, "var")
    return [b.add("batch_norm", _x(b, (2, 3, 4, 4)), *p, var, epsilon=1e-3)]


def _layer_norm(gamma_shape: tuple[int, ...] | None, beta: bool) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        rng = np.random.default_rng(5)
        ins = [_x(b, (2, 3, 8))]
        ins.append(b.add_constant(_w(rng, *gamma_shape), "g") if gamma_shape else "")
        if beta:
            ins.append(b.add_constant(_w(rng, 8), "beta"))
        while not ins[-1]:
            ins.pop()
        return [b.add("layer_norm", *ins, axis=2, epsilon=1e-5)]

    return Case(build)


def _attention(mask: bool) -> Case:
    def build(b: GraphBuilder) -> list[str]:
        q, k, v = (_x(b, (2, 4, 6, 8), name=n) for n in "qkv")
        ins = [q, k, v]
        if mask:
            m = np.zeros((2, 1, 1, 6), np.float32)
            m[1, ..., 4:] = -1e4
            ins.append(b.add_constant(m, "mask"))
        return [b.add("attention", *ins, scale=0.35)]

    return Case(build)


def _concat(b: GraphBuilder) -> list[str]:
    return [b.add("concat", _x(b, (2, 3)), _x(b, (2, 5), name="y"), axis=1)]


def _gather(b: GraphBuilder) -> list[str]:
    idx = b.add_constant(np.array([[0, -1], [2, 1]], np.int64), "idx")
    return [b.add("gather", _x(b, (3, 4)), idx, axis=0)]


def _gather_scalar(b: GraphBuilder) -> list[str]:
    """A 0-d index drops the axis (a 0-d initializer must stay 0-d)."""
    idx = b.add_constant(np.array(2, np.int64), "idx")
    return [b.add("gather", _x(b, (3, 4, 5)), idx, axis=1)]


def _gather_elements(b: GraphBuilder) -> list[str]:
    idx = b.add_constant(np.array([[0, 2, 1], [1, 0, 0]], np.int64), "idx")
    return [b.add("gather_elements", _x(b, (2, 3)), idx, axis=1)]


def _scatter_nd(b: GraphBuilder) -> list[str]:
    idx = b.add_constant(np.array([[1], [3]], np.int64), "idx")
    return [b.add("scatter_nd", _x(b, (4, 3)), idx, _x(b, (2, 3), name="u"), reduction="add")]


def _resize(mode: str, sizes: list[int], scales: list[float]) -> Case:
    return _build_simple(
        "resize",
        (1, 2, 4, 5),
        mode=mode,
        sizes=sizes,
        scales=scales,
        coordinate_transformation_mode="half_pixel",
    )


def _topk(b: GraphBuilder) -> list[str]:
    values, indices = b.add_node("topk", [_x(b, (3, 7))], {"k": 3, "axis": 1})
    return [values, indices]


def _quantize_f16(b: GraphBuilder) -> list[str]:
    x = b.add("cast", _x(b, (3, 4)), to=D.f16)
    a = {"scale": [0.02], "zero_point": [1], "axis": None}
    q = b.add("quantize", x, to=D.i8, **a)
    return [q, b.add("dequantize", q, to=D.f16, **a)]


def _fused(b: GraphBuilder) -> list[str]:
    """fuse-epilogue and fuse-elementwise make `fused` nodes; see `test_fused_is_inlined`."""
    rng = np.random.default_rng(6)
    conv = {"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1]}
    y = b.add("conv", _x(b, (1, 3, 6, 6)), b.add_constant(_w(rng, 4, 3, 3, 3), "w"), **conv)
    y = b.add("relu", b.add("add", y, b.add_constant(_w(rng, 1, 4, 1, 1), "shift")))
    return [b.add("sigmoid", b.add("mul", y, y))]


CASES: dict[str, Case] = {
    **{op: _unary(op) for op in ("relu", "sigmoid", "tanh", "exp", "neg", "abs", "erf")},
    **{op: _unary(op) for op in ("floor", "ceil", "round", "sin", "cos", "copy")},
    **{op: _unary(op) for op in ("softplus", "hard_swish", "silu")},
    **{op: _unary(op, positive=True) for op in ("log", "sqrt", "reciprocal")},
    "gelu": _unary("gelu"),
    "gelu_tanh": _unary("gelu", approximate="tanh"),
    "leaky_relu": _unary("leaky_relu", alpha=0.2),
    "elu": _unary("elu", alpha=0.7),
    "hard_sigmoid": _unary("hard_sigmoid", alpha=0.3, beta=0.4),
    **{op: _binary(op) for op in ("add", "sub", "mul", "div", "max", "min")},
    "pow": _binary("pow", positive=True),
    **{op: _compare(op) for op in ("equal", "less", "greater", "less_equal", "greater_equal")},
    **{op: _logic(op) for op in ("and", "or", "xor")},
    "not": Case(lambda b: [b.add("not", _x(b, (4, 5), D.boolean))]),
    "where": Case(_where),
    "clip": _clip(-0.5, 0.7),
    "clip_min": _clip(0.0, float("inf")),
    "clip_max": _clip(float("-inf"), 6.0),
    "cast": Case(_cast),
    "mod_python_float": _float_mod(False),
    "mod_fmod_float": _float_mod(True),
    "mod_int": Case(_int_mod),
    "conv": _conv(),
    "conv_group_nobias": _conv(group=2, bias=False),
    "conv_nhwc": _conv("nhwc"),
    "conv_transpose": Case(_conv_transpose),
    "matmul": Case(_matmul),
    "max_pool": _pool("max_pool", ceil_mode=True),
    "max_pool_dilated": _pool("max_pool", dilations=[2, 1]),
    "max_pool_nhwc": _pool("max_pool", "nhwc"),
    "avg_pool": _pool("avg_pool", count_include_pad=False),
    "avg_pool_pad": _pool("avg_pool", count_include_pad=True, ceil_mode=True),
    "avg_pool_nhwc": _pool("avg_pool", "nhwc"),
    "batch_norm": Case(_batch_norm),
    "lrn": _build_simple("lrn", (1, 5, 3, 3), size=3, alpha=1e-3, beta=0.6, bias=1.5),
    "softmax": _build_simple("softmax", (2, 3, 4), axis=1),
    "log_softmax": _build_simple("log_softmax", (2, 3, 4), axis=2),
    "layer_norm": _layer_norm((8,), True),
    "layer_norm_no_scale": _layer_norm(None, True),
    "layer_norm_scalar_scale": _layer_norm((1,), False),
    "attention": _attention(False),
    "attention_mask": _attention(True),
    "reshape": _build_simple("reshape", (2, 3, 4), shape=[4, 6]),
    "reshape_empty": _build_simple("reshape", (2, 0, 4), shape=[0, 8]),
    "transpose": _build_simple("transpose", (2, 3, 4), perm=[2, 0, 1]),
    "concat": Case(_concat),
    "slice": _slice([1, 0], [4, 6], [2, 3]),
    "slice_negative_step": _slice([4, 5], [-1, 1], [-2, -1]),
    "slice_empty": _slice([3, 0], [3, 6], [1, 1]),
    "pad": _pad("constant", [1, 0, 2, 3]),
    "pad_crop": _pad("constant", [-1, 1, 0, -2]),
    "pad_reflect": _pad("reflect", [1, 2, 2, 1]),
    "pad_edge": _pad("edge", [2, 0, 0, 3]),
    "expand": _build_simple("expand", (3, 1), shape=[2, 3, 4]),
    "tile": _build_simple("tile", (2, 3), repeats=[2, 3]),
    "gather": Case(_gather),
    "gather_scalar": Case(_gather_scalar),
    "gather_elements": Case(_gather_elements),
    "scatter_nd": Case(_scatter_nd),
    "depth_to_space": _build_simple("depth_to_space", (1, 8, 2, 3), blocksize=2, mode="DCR"),
    "depth_to_space_crd": _build_simple("depth_to_space", (1, 8, 2, 3), blocksize=2, mode="CRD"),
    "space_to_depth": _build_simple("space_to_depth", (1, 2, 4, 6), blocksize=2),
    "resize_linear_scales": _resize("linear", [1, 2, 8, 7], [1.0, 1.0, 2.0, 1.5]),
    "resize_cubic_sizes": _resize("cubic", [1, 2, 3, 7], [1.0, 1.0, 0.75, 1.4]),
    **{
        f"{op}{tag}": _reduce(op, axes, keep)
        for op in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod")
        for tag, axes, keep in (("", [1, 2], True), ("_all", [], False))
    },
    "argmax": _build_simple("argmax", (3, 5), axis=1, keepdims=False),
    "argmin": _build_simple("argmin", (3, 5), axis=0, keepdims=True, select_last_index=True),
    "topk": Case(_topk),
    "cumsum": _build_simple("cumsum", (3, 4), axis=1, exclusive=True, reverse=True),
    "qdq_i8": _qdq(D.i8, None),
    "qdq_u8": _qdq(D.u8, None),
    "qdq_i8_axis": _qdq(D.i8, 1),
    "qdq_u8_axis": _qdq(D.u8, 2),
    "qdq_i16_axis": _qdq(D.i16, 1),
    "qdq_i4": _qdq(D.i4, None),
    "dq_weight_int8": _dq_weight(D.i8),
    "dq_weight_int4": _dq_weight(D.i4),
    "quantize_f16": Case(_quantize_f16),
}


def _feeds(graph: Graph) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(RNG_SEED)
    feeds = {}
    for v in graph.inputs:
        dt, shape = v.type.dtype, v.type.shape
        if dt == D.boolean:
            feeds[v.name] = rng.random(shape) < 0.5
        elif dt.is_int:
            feeds[v.name] = rng.integers(-20, 20, shape).astype(dt.numpy)
        else:
            feeds[v.name] = rng.standard_normal(shape).astype(dt.numpy)
    return feeds


def build(case: Case) -> Graph:
    b = GraphBuilder("case", fold=False)
    b.set_outputs(case.build(b))
    return b.build()


def run_onnx(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def assert_same(
    graph: Graph, feeds: dict[str, np.ndarray], atol: float = 1e-5, full_check: bool = True
) -> None:
    """The exported graph in onnxruntime computes what the interpreter computes."""
    model = to_onnx(graph)
    onnx.checker.check_model(model, full_check=full_check)
    want = run_graph(graph, feeds)
    got = run_onnx(model, feeds)
    for name in graph.outputs:
        w, g = np.asarray(want[name]), got[name]
        assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, w.dtype, g.shape)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_interpreter(name: str) -> None:
    case = CASES[name]
    graph = build(case)
    assert_same(graph, _feeds(graph), case.atol, case.shape_inference)


def test_every_exportable_op_has_a_case() -> None:
    covered = {n.op for case in CASES.values() for n in build(case).nodes}
    covered |= {"fused"}  # test_fused_is_inlined
    assert set(exportable_ops()) - covered == set()


def test_fused_is_inlined() -> None:
    """A graph after the cpu target's fusion passes exports its `fused` bodies inline."""
    graph = build(Case(_fused))
    fused = run_pipeline(graph, parse_pipeline("fuse-epilogue,fuse-elementwise"), PassContext())
    assert "fused" in {n.op for n in fused.nodes}
    feeds = _feeds(graph)
    assert_same(fused, feeds)
    model = to_onnx(fused)
    assert {n.op_type for n in model.graph.node} >= {"Conv", "Relu", "Sigmoid"}


def test_names_are_preserved() -> None:
    graph = build(CASES["dq_weight_int8"])
    model = to_onnx(graph)
    inits = {t.name for t in model.graph.initializer}
    assert {c.name for c in graph.constants} <= inits
    assert [i.name for i in model.graph.input] == [v.name for v in graph.inputs]
    assert [o.name for o in model.graph.output] == list(graph.outputs)
    produced = {o for n in model.graph.node for o in n.output}
    assert {o.name for n in graph.nodes for o in n.outputs} <= produced
    w = next(t for t in model.graph.initializer if t.name == "w_int")
    assert w.data_type == onnx.TensorProto.INT8
    assert model.opset_import[0].version == X.BASE_OPSET  # 21 only for 4-bit / 16-bit types
    assert to_onnx(build(CASES["dq_weight_int4"])).opset_import[0].version == 21


def test_integer_ops_after_fold_qdq_say_what_to_do() -> None:
    graph = build(CASES["conv"])
    calibration = {"x": np.random.default_rng(7).standard_normal((4, 1, 4, 9, 9), np.float32)}
    ctx = PassContext(calibration=calibration)
    folded = run_pipeline(graph, parse_pipeline("quantize,fold-qdq"), ctx)
    assert "qconv" in {n.op for n in folded.nodes}
    with pytest.raises(ExportError, match=r"qconv node.*'qconv'.*before `fold-qdq`"):
        to_onnx(folded)


def test_op_without_exporter_names_node_and_op(monkeypatch: pytest.MonkeyPatch) -> None:
    X._load_exporters()
    monkeypatch.delitem(X._EXPORTERS, "relu")
    b = GraphBuilder("g", fold=False)
    b.set_outputs([b.add("relu", _x(b, (2, 2)), loc="/block/Relu")])
    with pytest.raises(ExportError, match=r"relu node '/block/Relu'.*'relu'.*no ONNX exporter"):
        to_onnx(b.build())
