"""The ONNX backend node cases, prepared for a compiler of static shapes.

`collect_testcases()` rebuilds every node case of the installed onnx package: a one-node model
(or, for cases named `..._expanded`, the op's function body), its inputs and the outputs onnx
expects. This module turns them into what modelc can take and says how a result is judged:

- `freeze`: modelc compiles static shapes, so inputs an op needs at compile time (shapes, axes,
  pads, scalars) cannot stay graph inputs. Every input that is not some node's data operand
  (input 0), is a scalar, or is an int64 tensor becomes an initializer holding the case's value.
- `case_op`: the op a case tests (an expanded case belongs to the op it expands), so reports can
  be grouped per op.
- `out_of_scope_types`: the element types modelc leaves out on purpose (float8 / float4, 2-bit
  integers, strings, complex, sequences / optionals), so a report can tell "out of scope" from
  "not done yet".
- `compare`: onnx's own check (`onnx.backend.test.runner.Runner.assert_similar_outputs`), so a
  pass here means what a pass means for any onnx backend.

Both the interpreter-level test (`tests/frontend/test_onnx_node_cases.py`) and the compiled
conformance runner (`tests/conformance/runner.py`) build on it.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case.test_case import TestCase

DEFAULT_DOMAINS = ("", "ai.onnx")
EXPANDED = re.compile(r"_expanded(_ver\d+)?$")

# Element types modelc has no dtype for, on purpose (docs/onnx_frontend.md, "Element types").
_OUT_OF_SCOPE_ELEM_NAMES = (
    "FLOAT8E4M3FN",
    "FLOAT8E4M3FNUZ",
    "FLOAT8E5M2",
    "FLOAT8E5M2FNUZ",
    "FLOAT8E8M0",
    "FLOAT4E2M1",
    "INT2",
    "UINT2",
    "STRING",
    "COMPLEX64",
    "COMPLEX128",
)
OUT_OF_SCOPE_ELEM_TYPES: frozenset[int] = frozenset(
    getattr(onnx.TensorProto, n) for n in _OUT_OF_SCOPE_ELEM_NAMES if hasattr(onnx.TensorProto, n)
)


@functools.cache
def all_cases() -> tuple[TestCase, ...]:
    """Every node case of the installed onnx, in onnx's order (built once per process)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx's generators overflow casts on purpose
        return tuple(c for c in collect_testcases() if c.model is not None)


def case_ops(case: TestCase) -> set[str]:
    """The op types a case's graph uses (top level; what a converter must exist for)."""
    assert case.model is not None
    return {n.op_type for n in case.model.graph.node}


@functools.cache
def _base_ops() -> dict[str, str]:
    """Case name -> op key, for the one-node cases (every expanded case has one)."""
    out = {}
    for c in all_cases():
        assert c.model is not None
        nodes = c.model.graph.node
        if len(nodes) == 1 and not EXPANDED.search(c.name):
            out[c.name] = op_key(nodes[0])
    return out


def op_key(node: onnx.NodeProto) -> str:
    """`Conv` for the default domain, `ai.onnx.ml::Binarizer` for the others."""
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def case_op(case: TestCase) -> str:
    """The op a case tests: its node's op, or for `<base>_expanded[_verN]` the op of <base>
    (the expanded graph is that op's function body, made of other ops)."""
    base = EXPANDED.sub("", case.name)
    ops = _base_ops()
    if base in ops:
        return ops[base]
    assert case.model is not None
    return op_key(case.model.graph.node[0])


def opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset (0 when it imports none)."""
    return max((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), default=0)


def to_array(x: object) -> np.ndarray:
    """A case's tensor input or output as numpy; 4-bit integers (ml_dtypes int4 / uint4)
    become int8 / uint8, which is how modelc stores them (one element per byte)."""
    arr = numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)
    if arr.dtype.name in ("int4", "uint4"):
        arr = arr.astype(np.int8 if arr.dtype.name == "int4" else np.uint8)
    return arr


def to_value(x: object) -> object:
    """`to_array` for tensors; sequences (lists) and absent optionals (None) stay as they are
    (modelc has no such values; the import rejects them with a typed error)."""
    if isinstance(x, (list, tuple)) or x is None:
        return x
    return to_array(x)


def freeze(
    model: onnx.ModelProto, inputs: Sequence[object]
) -> tuple[onnx.ModelProto, list[object]]:
    """Compile-time inputs become initializers (see the module docstring); returns the new
    model and the feeds of the inputs it keeps, in the graph's input order. Values that are not
    tensors (sequences, optionals) stay inputs."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    data = {node.input[0] for node in model.graph.node if node.input}
    kept, feeds = [], []
    for v, x in zip(list(model.graph.input), inputs):
        if not isinstance(x, np.ndarray) or (v.name in data and x.ndim > 0 and x.dtype != np.int64):
            kept.append(v)
            feeds.append(x)
        else:
            model.graph.initializer.append(numpy_helper.from_array(x, v.name))
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model, feeds


# ---- element types -------------------------------------------------------------------------


def out_of_scope_types(case: TestCase) -> list[str]:
    """The out-of-scope element types a case touches anywhere (values, initializers, attributes,
    subgraphs, the data itself), e.g. `["FLOAT8E4M3FN", "sequence"]`; empty when none."""
    assert case.model is not None
    found: set[str] = set()
    for t in _types(case.model.graph):
        found.update(_type_problems(t))
    for elem in _elem_types(case.model.graph):
        if elem in OUT_OF_SCOPE_ELEM_TYPES:
            found.add(onnx.TensorProto.DataType.Name(elem))
    for inputs, outputs in case.data_sets or ():
        for x in [*inputs, *outputs]:
            if isinstance(x, (list, tuple)) or x is None:
                found.add("sequence/optional")
            elif isinstance(x, np.ndarray) and x.dtype.kind in "OUSc":
                found.add("STRING" if x.dtype.kind in "OUS" else "COMPLEX")
    return sorted(found)


def _type_problems(t: onnx.TypeProto) -> Iterator[str]:
    kind = t.WhichOneof("value")
    if kind == "tensor_type":
        if t.tensor_type.elem_type in OUT_OF_SCOPE_ELEM_TYPES:
            yield onnx.TensorProto.DataType.Name(t.tensor_type.elem_type)
    elif kind is not None:
        yield {"sequence_type": "sequence", "optional_type": "optional"}.get(kind, kind)


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for a in node.attribute:
            for g in [a.g] if a.HasField("g") else list(a.graphs):
                yield from _graphs(g)


def _types(graph: onnx.GraphProto) -> Iterator[onnx.TypeProto]:
    for g in _graphs(graph):
        for v in [*g.input, *g.output, *g.value_info]:
            if v.HasField("type"):
                yield v.type
        for node in g.node:
            for a in node.attribute:
                if a.HasField("tp"):
                    yield a.tp
                yield from a.type_protos


def _elem_types(graph: onnx.GraphProto) -> Iterator[int]:
    """Element types named by initializers, tensor attributes and type attributes (Cast's
    `to`, ConstantOfShape's value, ...)."""
    for g in _graphs(graph):
        for t in g.initializer:
            yield t.data_type
        for node in g.node:
            for a in node.attribute:
                if a.HasField("t"):
                    yield a.t.data_type
                for t in a.tensors:
                    yield t.data_type
                if a.name in ("to", "dtype", "output_dtype", "stash_type") and a.HasField("i"):
                    yield a.i


# ---- comparison ----------------------------------------------------------------------------


def compare(
    got: Sequence[np.ndarray], want: Sequence[np.ndarray], rtol: float, atol: float
) -> None:
    """onnx's `assert_similar_outputs` for tensors: same count, shape and dtype, then
    `assert_allclose(rtol, atol)` with NaN equal to NaN (bfloat16: rtol at least two ulps).

    One deliberate difference: integer and bool outputs must be equal. onnx passes them through
    assert_allclose too, where rtol=1e-3 lets large integers be off by a few; modelc promises
    bit-exact integer results (DESIGN.md, numerics contract), so the check is as strict.
    Raises AssertionError naming the output and what differs.
    """
    if len(got) != len(want):
        raise AssertionError(f"{len(got)} outputs, expected {len(want)}")
    for k, (out, ref) in enumerate(zip(got, want)):
        if out.shape != ref.shape:
            raise AssertionError(f"output {k}: shape {out.shape}, expected {ref.shape}")
        if out.dtype != ref.dtype:
            raise AssertionError(f"output {k}: dtype {out.dtype}, expected {ref.dtype}")
        kind = ref.dtype.kind
        if kind == "f" or ref.dtype.name == "bfloat16":
            r = max(rtol, 2**-6) if ref.dtype.name == "bfloat16" else rtol
            a, b = out.astype(np.float64), ref.astype(np.float64)
            close = np.isclose(a, b, rtol=r, atol=atol, equal_nan=True)
            # assert_allclose also requires +-inf in the same places (isclose does that).
            if not close.all():
                raise AssertionError(
                    f"output {k}: {_diff(a, b, close)} (rtol={r:g}, atol={atol:g})"
                )
        elif not np.array_equal(out, ref):
            differ = out != ref
            first = np.unravel_index(int(np.argmax(differ)), ref.shape) if ref.ndim else ()
            raise AssertionError(
                f"output {k}: {int(differ.sum())}/{ref.size} elements differ, first at "
                f"{tuple(int(i) for i in first)}: {out[first].item()!r} vs expected "
                f"{ref[first].item()!r}"
            )


def _diff(a: np.ndarray, b: np.ndarray, close: np.ndarray) -> str:
    bad = ~close
    with np.errstate(invalid="ignore"):
        err = np.where(bad, np.abs(a - b), 0.0)
    first = np.unravel_index(int(np.argmax(bad)), b.shape) if b.ndim else ()
    where = tuple(int(i) for i in first)
    worst = float(np.nanmax(err)) if np.isfinite(err).any() else float("nan")
    return (
        f"{int(bad.sum())}/{b.size} elements differ, max abs diff {worst:.3g}, first at "
        f"{where}: {a[first]:.6g} vs expected {b[first]:.6g}"
    )
