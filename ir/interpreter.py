"""The reference interpreter: the oracle every backend is compared to.

It runs each node's numpy reference implementation (`OpDef.evaluate`) in graph order and nothing
else: no fusion, no layout tricks, no caching. Whatever it computes *is* the semantics of the
graph, so it is kept short enough to check by reading.

Two details serve debugging and big models:
- values are freed once their last user ran, so ResNet-sized graphs run in the memory of their
  largest live set, not the sum of all activations (`trace=True` keeps everything instead, for
  per-layer comparison against a backend);
- arrays handed to ops are read-only views, so a reference implementation that writes into its
  input fails loudly instead of corrupting a value another node reads later.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelc.errors import Error, InputError, VerifyError
from modelc.ir.dtypes import from_numpy
from modelc.ir.graph import Graph
from modelc.ir.opdef import get_op
from modelc.ir.printer import format_type


def _readonly(arr: np.ndarray) -> np.ndarray:
    if not arr.flags.writeable:
        return arr
    view = arr.view()
    view.flags.writeable = False
    return view


def _dtype_name(dt: np.dtype) -> str:
    try:
        return from_numpy(dt).name
    except Error:
        return str(dt)


def check_inputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph inputs as read-only arrays, after checking names, shapes and dtypes exactly
    (no silent casts: a f64 array fed to a f32 input is a caller bug worth hearing about)."""
    expected = {v.name: v.type for v in graph.inputs}
    missing = [n for n in expected if n not in inputs]
    extra = [n for n in inputs if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unknown {extra}")
        raise InputError(
            f"graph {graph.name!r}: inputs {', '.join(parts)}; it takes "
            + ", ".join(f"{n}: {format_type(t)}" for n, t in expected.items())
        )
    out: dict[str, np.ndarray] = {}
    for name, t in expected.items():
        arr = np.asarray(inputs[name])
        want = t.dtype.numpy
        if arr.shape != t.shape or arr.dtype != want:
            got = f"{_dtype_name(arr.dtype)}[{','.join(map(str, arr.shape))}]"
            raise InputError(
                f"graph {graph.name!r}: input {name!r} expects {format_type(t)} "
                f"(numpy {want}), got {got} (numpy {arr.dtype})"
            )
        out[name] = _readonly(arr)
    return out


def _last_uses(graph: Graph) -> dict[str, int]:
    """For each value a node reads: the index of the last node reading it."""
    last: dict[str, int] = {}
    for index, node in enumerate(graph.nodes):
        for name in node.inputs:
            if name:
                last[name] = index
    return last


def run_graph(
    graph: Graph, inputs: Mapping[str, np.ndarray], *, trace: bool = False
) -> dict[str, np.ndarray]:
    """Evaluate `graph` on `inputs` (keyed by graph input name).

    Returns the graph outputs by name, in graph order. With `trace=True` it also returns the
    output of every node (keyed by value name), for per-layer debugging. Returned arrays may be
    read-only (they can be views of constants or inputs); copy before writing into them.
    """
    env: dict[str, np.ndarray] = check_inputs(graph, inputs)
    env.update((c.name, c.data) for c in graph.constants)
    keep = set(graph.outputs) | set(env)  # never free outputs, inputs or constants
    last_use = _last_uses(graph)
    traced: dict[str, np.ndarray] = {}

    for index, node in enumerate(graph.nodes):
        arrays = []
        for name in node.inputs:
            if name and name not in env:
                raise VerifyError(
                    f"{node.describe()} (node #{index}) reads %{name}, which is not defined "
                    "before it (run ir.verify.verify on the graph)"
                )
            arrays.append(env[name] if name else None)
        out_types = tuple(o.type for o in node.outputs)
        try:
            results = get_op(node.op).evaluate(arrays, node.attrs, out_types)
        except Error as e:
            raise type(e)(f"{node.describe()} (node #{index}): {e}") from e
        except Exception as e:  # a bug in a reference implementation: say where it ran
            if hasattr(e, "add_note"):  # Python >= 3.11
                e.add_note(f"while evaluating {node.describe()} (node #{index})")
            raise
        if len(results) != len(node.outputs):
            raise VerifyError(
                f"{node.describe()} (node #{index}): the reference of {node.op} returned "
                f"{len(results)} arrays for {len(node.outputs)} outputs"
            )
        for o, r in zip(node.outputs, results):
            r = _readonly(r)
            if trace:
                traced[o.name] = r
            if o.name in keep or last_use.get(o.name, -1) > index:
                env[o.name] = r
        if not trace:
            for name in node.inputs:
                if name and last_use[name] == index and name not in keep:
                    env.pop(name, None)

    result = {name: env[name] for name in graph.outputs}
    if trace:
        traced.update(result)
    return result if not trace else traced
