"""Every converter on one-node ONNX models, per op version: imported, run by the reference
interpreter, compared with onnxruntime (atol / rtol 1e-4). The cases live in onnx_cases_*.py."""

from __future__ import annotations

import onnx_cases_detect
import onnx_cases_math
import onnx_cases_quant
import onnx_cases_tensor
import pytest
from onnx_testing import Case, check_model

from modelc.frontend.onnx_ops.registry import lookup, supported_ops

CASE_TABLES = (
    onnx_cases_math.CASES,
    onnx_cases_tensor.CASES,
    onnx_cases_quant.CASES,
    onnx_cases_detect.CASES,
)
CASES: dict[str, Case] = {k: v for table in CASE_TABLES for k, v in table.items()}
assert len(CASES) == sum(len(table) for table in CASE_TABLES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_converter(name: str) -> None:
    c = CASES[name]
    check_model(c.model(), c.inputs, atol=c.atol, oracle=c.oracle)


def test_every_converter_version_has_a_case() -> None:
    """Each registered (op, since) is exercised by a case whose opset selects it."""
    covered = {(c.op, lookup(c.op, c.opset).since) for c in CASES.values()}
    missing = [
        f"{op}-{since}"
        for op, versions in supported_ops().items()
        for since in versions
        if (op, since) not in covered
    ]
    assert not missing, f"no test case for {missing}"
