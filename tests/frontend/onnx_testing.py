"""Helpers for the ONNX frontend tests: build small ONNX models, run them with onnxruntime and
through `load_onnx` + the reference interpreter, compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelc.frontend.onnx import load_onnx
from modelc.ir.graph import Graph
from modelc.ir.interpreter import run_graph
from modelc.ir.verify import verify

RNG = np.random.default_rng(0)


def rand(*shape: int, dtype: Any = np.float32, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    return RNG.uniform(low, high, shape).astype(dtype)


def value_info(name: str, x: np.ndarray) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str],
    *,
    consts: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
    functions: Sequence[onnx.FunctionProto] = (),
    extra_opsets: Sequence[onnx.OperatorSetIdProto] = (),
) -> onnx.ModelProto:
    """A model of `nodes`; `inputs` become graph inputs (typed like the arrays), `consts`
    initializers, `outputs` untyped graph outputs."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [value_info(k, v) for k, v in inputs.items()],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (consts or {}).items()],
    )
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets, ignore_unknown=True),
        functions=list(functions),
    )


def run_ort(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return list(sess.run(None, dict(feeds)))


def run_modelc(
    graph: Graph, model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """The interpreter's outputs; graph inputs follow the ONNX inputs' order (names may be
    sanitized, so they are matched by position)."""
    produced = {o for node in model.graph.node for o in node.output}
    inits = {t.name for t in model.graph.initializer}
    onnx_inputs = [
        v.name for v in model.graph.input if v.name not in inits and v.name not in produced
    ]
    assert len(onnx_inputs) == len(graph.inputs)
    ins = {v.name: feeds[o] for v, o in zip(graph.inputs, onnx_inputs)}
    out = run_graph(graph, ins)
    return [out[name] for name in graph.outputs]


def assert_close(got: np.ndarray, want: np.ndarray, atol: float, rtol: float, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    if want.dtype.name in ("int4", "uint4"):  # ml_dtypes; modelc stores them one per byte
        want = want.astype(np.int8 if want.dtype.name == "int4" else np.uint8)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != onnxruntime's {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != onnxruntime's {want.dtype}"
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, atol=atol, rtol=rtol, err_msg=what, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def run_reference(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    return list(ReferenceEvaluator(model).run(None, dict(feeds)))


def check_model(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    oracle: str = "ort",
) -> Graph:
    """Import `model`, verify the graph, and compare its interpreter outputs with onnxruntime
    (or with onnx's reference evaluator)."""
    graph = load_onnx(model)
    verify(graph)
    want = run_ort(model, feeds) if oracle == "ort" else run_reference(model, feeds)
    got = run_modelc(graph, model, feeds)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, atol, rtol, f"output {k} ({graph.outputs[k]})")
    return graph


@dataclass
class Case:
    """One ONNX node `op(ins) -> outs` under test. `ins` names inputs (`x*` names are graph
    inputs fed from `inputs`, others initializers from `consts`; "" is an absent input)."""

    op: str
    inputs: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 17
    ins: list[str] | None = None
    outs: int = 1
    atol: float = 1e-4
    # "ort", or "reference" (onnx's ReferenceEvaluator) where onnxruntime departs from the spec
    oracle: str = "ort"

    def model(self) -> onnx.ModelProto:
        ins = self.ins if self.ins is not None else [*self.inputs, *self.consts]
        outs = [f"y{k}" for k in range(self.outs)]
        node = helper.make_node(self.op, ins, outs, name="n0", **self.attrs)
        return make_model([node], self.inputs, outs, consts=self.consts, opset=self.opset)


# ---- case tables ------------------------------------------------------------------------------

I64_MAX = np.iinfo(np.int64).max


def i64(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def f32(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float32)


def scalar(v: float | int | bool, dtype: type = np.float32) -> np.ndarray:
    """A 0-d array (ONNX scalar inputs are rank 0)."""
    return np.array(v, dtype=dtype)


class CaseTable(dict[str, Case]):
    """Named cases; a name given twice is a mistake in the table."""

    def add(self, name: str, c: Case) -> None:
        assert name not in self, name
        self[name] = c
