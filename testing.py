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


def random_inputs(graph: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs for every graph input (floats ~N(0,1), ints in [0, 8), bools)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in graph.inputs:
        dt = v.type.dtype
        if dt.is_float:
            feeds[v.name] = rng.standard_normal(v.type.shape).astype(dt.numpy)
        elif dt.kind == "bool":
            feeds[v.name] = rng.random(v.type.shape) > 0.5
        else:
            feeds[v.name] = rng.integers(0, 8, v.type.shape).astype(dt.numpy)
    return feeds


def check_pass(
    pipeline: str,
    before: str,
    expected: str | None,
    *,
    idempotent: bool = True,
    numeric: bool = True,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> Any:
    """The standard test of a graph pass, in the IR's text form.

    1. golden: `pipeline` applied to `before` prints exactly `expected` (both are parsed and
       re-printed, so spacing and `//` comments in the test do not matter);
    2. idempotence: running the pipeline again changes nothing;
    3. numbers: the interpreter gives the same outputs before and after on random inputs.
    The verifier runs after every pass. Returns the transformed graph.
    """
    from modelc.ir.interpreter import run_graph
    from modelc.ir.parser import parse_graph
    from modelc.ir.printer import print_graph
    from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline

    g0 = parse_graph(before)
    passes = parse_pipeline(pipeline)
    g1 = run_pipeline(g0, passes, PassContext(verify=True))
    got = print_graph(g1)
    if expected is not None:
        want = print_graph(parse_graph(expected))
        assert got == want, (
            f"pass output differs from the golden text:\n--- got\n{got}\n--- want\n{want}"
        )
    if idempotent:
        g2 = run_pipeline(g1, passes, PassContext(verify=True))
        assert print_graph(g2) == got, f"{pipeline} is not idempotent:\n{print_graph(g2)}"
    if numeric:
        feeds = random_inputs(g0)
        a, b = run_graph(g0, feeds), run_graph(g1, feeds)
        assert list(a) == list(b), "outputs changed names"
        for k in a:
            np.testing.assert_allclose(b[k], a[k], atol=atol, rtol=rtol, err_msg=k)
    return g1
