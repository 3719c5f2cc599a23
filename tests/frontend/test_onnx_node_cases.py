"""The ONNX backend node test cases (rebuilt from the installed onnx package by
`collect_testcases()`) for every case whose ops all have a converter: imported, run by the
reference interpreter, compared with the outputs onnx stores for them.

modelc compiles static shapes, so inputs an op needs at compile time cannot be graph inputs: every
input that is not some node's data operand (input 0), is a scalar, or is an int64 tensor (shapes,
axes, pads, ...) becomes an initializer holding the case's value (`conformance.node_cases.freeze`,
shared with the compiled conformance run of tests/conformance/).

Cases modelc does not pass are listed in EXPECTED with the reason; `test_node_case_rejected`
checks they fail the expected way (a typed error), so one that starts to pass fails the run until
its entry goes. At the time of writing: 1104 cases pass, 172 are rejected on purpose.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conformance.node_cases import all_cases, case_ops, freeze, to_array
from onnx.backend.test.case.test_case import TestCase

from modelc.errors import UnsupportedOpError, UnsupportedTypeError
from modelc.frontend.onnx import load_onnx
from modelc.frontend.onnx_ops.registry import supported_ops
from modelc.ir.interpreter import run_graph

NO_TYPE = "an element type modelc has no dtype for"
# (case-name pattern, the error, why): the cases modelc does not pass, on purpose or for now.
EXPECTED: list[tuple[str, type[Exception], str]] = [
    (r"FLOAT8|FLOAT4|INT2|UINT2|E8M0", UnsupportedTypeError, NO_TYPE),
    (r"_string", UnsupportedTypeError, NO_TYPE),
    (r"identity_sequence|identity_opt", UnsupportedTypeError, "sequence / optional values"),
    (r"castlike_FLOAT(16)?_to_U?INT4$", AssertionError, "freeze stores the int4 `like` as int8"),
    (r"resize_.*antialias", UnsupportedOpError, "Resize: no antialias"),
    (
        r"resize_downsample_scales_(linear|cubic)_align_corners",
        AssertionError,
        "align_corners when in * scale is not whole: onnxruntime (which modelc follows) divides "
        "by the output size, the ONNX reference by in * scale",
    ),
    (r"resize_tf_crop_and_resize", UnsupportedOpError, "Resize: no tf_crop_and_resize"),
    (r"averagepool_.*dilations", UnsupportedOpError, "the IR's avg_pool has no dilations"),
    (r"training_dropout|batchnorm_.*training_mode", UnsupportedOpError, "training mode"),
    (r"maxpool_with_argmax", UnsupportedOpError, "MaxPool's Indices output"),
    (r"wrap_pad", UnsupportedOpError, "Pad mode wrap"),
    (r"quantizelinear_(e4m3fn|e5m2|float4e2m1|u?int2)", UnsupportedTypeError, NO_TYPE),
    (r"quantizelinear_blocked", UnsupportedOpError, "blocked quantization of a run-time tensor"),
    (r"dynamicquantizelinear", UnsupportedOpError, "QuantizeLinear with a run-time scale"),
    (r"test_quantizelinear_int4$", AssertionError, "freeze stores the int4 zero point as int8"),
]

ATOL = {"float16": 1e-3, "bfloat16": 1e-2}


def _cases() -> list[TestCase]:
    supported = set(supported_ops())
    return [c for c in all_cases() if c.data_sets and case_ops(c) <= supported]


def _expected_failure(case: TestCase) -> type[Exception] | None:
    """The error a case is expected to end in (see EXPECTED), or None when it should pass."""
    for pattern, error, _why in EXPECTED:
        if re.search(pattern, case.name):
            return error
    return None


CASES = _cases()
PASSING = [c for c in CASES if _expected_failure(c) is None]
REJECTED = [c for c in CASES if _expected_failure(c) is not None]


def _run(case: TestCase) -> None:
    raw_inputs, raw_outputs = case.data_sets[0]
    model, inputs = freeze(case.model, [to_array(x) for x in raw_inputs])
    graph = load_onnx(model)
    got = run_graph(graph, {v.name: x for v, x in zip(graph.inputs, inputs)})
    for k, want in enumerate(to_array(x) for x in raw_outputs):
        value = got[graph.outputs[k]]
        assert value.shape == want.shape and value.dtype == want.dtype, f"output {k}"
        if want.dtype.kind == "f" or want.dtype.name == "bfloat16":
            tol = ATOL.get(want.dtype.name, 1e-4)
            np.testing.assert_allclose(
                value.astype(np.float64),
                want.astype(np.float64),
                atol=tol,
                rtol=tol,
                equal_nan=True,
                err_msg=f"output {k}",
            )
        else:
            np.testing.assert_array_equal(value, want, err_msg=f"output {k}")


@pytest.mark.parametrize("case", PASSING, ids=[c.name for c in PASSING])
def test_node_case(case: TestCase) -> None:
    _run(case)


@pytest.mark.parametrize("case", REJECTED, ids=[c.name for c in REJECTED])
def test_node_case_rejected(case: TestCase) -> None:
    """Cases modelc does not pass fail the expected way: a typed error, or (for the entries
    marked so) a known numeric gap; one that starts to pass must leave EXPECTED."""
    error = _expected_failure(case)
    assert error is not None
    with pytest.raises(error):
        _run(case)


def test_enough_cases_are_covered() -> None:
    """Guards against collect_testcases() silently yielding nothing (an onnx API change)."""
    assert len(CASES) > 900
