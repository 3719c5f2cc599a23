"""onnxruntime as the float oracle for single ops: build a one-node ONNX model and run it.

Op tests check an OpDef's numpy reference against onnxruntime with this, so the reference
interpreter's semantics are pinned to what users compare against, not to our reading of the spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest


def run_node(
    op_type: str,
    inputs: Sequence[np.ndarray | None],
    attrs: Mapping[str, Any] | None = None,
    *,
    opset: int = 19,
    constants: Mapping[int, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Outputs of one ONNX node `op_type(inputs)`; None inputs are absent optional inputs and
    `constants` maps input positions to initializers (e.g. the `axes` input of ReduceSum)."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper, numpy_helper

    constants = dict(constants or {})
    names: list[str] = []
    feeds: dict[str, np.ndarray] = {}
    graph_inputs = []
    initializers = []
    for i in range(len(inputs) + len(constants)):
        x = constants.get(i, inputs[i] if i < len(inputs) else None)
        if x is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if i in constants:
            initializers.append(numpy_helper.from_array(np.asarray(x), name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(x.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, x.shape))
            feeds[name] = x
    node = helper.make_node(op_type, names, ["out"], **dict(attrs or {}))
    graph = helper.make_graph(
        [node],
        "one_node",
        graph_inputs,
        [helper.make_empty_tensor_value_info("out")],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about the untyped output
    sess = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return list(sess.run(None, feeds))
