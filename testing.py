"""Test helpers shipped with the package, so every op and pass test checks the same way.

`check_lowering` is the differential test of one op: the C kernel its lowering produces must
match the op's numpy reference (bit-exact for integer dtypes, `atol`/`rtol` for floats).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import from_numpy
from modelc.ir.graph import Node, Value
from modelc.ir.loop import Schedule
from modelc.ir.opdef import LowerRequest, get_op
from modelc.ir.types import TensorType


def lower_op(
    op: str,
    inputs: Sequence[np.ndarray | None],
    attrs: Mapping[str, Any] | None = None,
    schedule: Schedule | None = None,
) -> tuple[Any, tuple[TensorType, ...]]:
    """Lower one op applied to arrays of these shapes/dtypes; returns (kernel, out_types)."""
    opdef = get_op(op)
    a = opdef.check_attrs(Attrs(attrs or {}))
    in_types = tuple(
        None if x is None else TensorType(x.shape, from_numpy(x.dtype)) for x in inputs
    )
    out_types = opdef.infer_types(in_types, a)
    names = tuple("" if x is None else f"x{i}" for i, x in enumerate(inputs))
    node = Node(op, names, tuple(Value(f"y{i}", t) for i, t in enumerate(out_types)), a)
    assert opdef.lower is not None, f"op {op} has no lowering"
    req = LowerRequest(
        node=node,
        in_types=tuple(t for t in in_types if t is not None),
        out_types=out_types,
        schedule=schedule or Schedule(),
        kernel_name=f"k_{op}",
    )
    return opdef.lower(req), out_types


def check_lowering(
    op: str,
    inputs: Sequence[np.ndarray | None],
    attrs: Mapping[str, Any] | None = None,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    schedule: Schedule | None = None,
) -> list[np.ndarray]:
    """Assert that the compiled lowering of `op` matches its reference; returns the outputs."""
    from modelc.runtime.kernel_runner import run_kernel

    opdef = get_op(op)
    kernel, out_types = lower_op(op, inputs, attrs, schedule)
    a = opdef.check_attrs(Attrs(attrs or {}))
    expected = opdef.evaluate(list(inputs), a, out_types)
    got = run_kernel(kernel, [x for x in inputs if x is not None])
    results = []
    for i, (g, e, t) in enumerate(zip(got, expected, out_types)):
        g = g.reshape(t.shape)
        if t.dtype.is_float:
            np.testing.assert_allclose(
                g, e, atol=atol, rtol=rtol, err_msg=f"{op} output {i}", equal_nan=True
            )
        else:
            np.testing.assert_array_equal(g, e, err_msg=f"{op} output {i}")
        results.append(g)
    return results
