"""The op registry: one `OpDef` per graph-IR op.

An OpDef is everything the compiler knows about an op: its attribute schema, type/shape
inference, a numpy reference implementation (the semantics; the interpreter and constant folding
use it), traits that passes read (elementwise, broadcast, injective, reduction, view, ...), and its
lowering to a level-2 kernel. Adding an op means adding one OpDef in one file of `ir/ops/`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelc.errors import ShapeError, UnsupportedOpError, VerifyError
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType
from modelc.ir.types import TensorType

if TYPE_CHECKING:
    from modelc.ir.graph import Node
    from modelc.ir.loop import Expr, Kernel, Schedule, Stmt

# Traits passes read. Keep this list short and documented.
ELEMENTWISE = "elementwise"  # out[i] = f(in0[i], in1[i], ...) on equal shapes
BROADCAST = "broadcast"  # elementwise with numpy broadcasting of inputs
INJECTIVE = "injective"  # each output element reads a computable set of input elements (copy-like)
REDUCTION = "reduction"  # reduces axes
# Heavy op (conv/matmul) whose output can take an elementwise epilogue: its lowering applies
# `LowerRequest.epilogue` to every output element once that element is final.
OUT_FUSABLE = "out_fusable"
OPAQUE = "opaque"  # nothing fuses into or out of it
VIEW = "view"  # output is input 0's bytes reinterpreted (reshape): no kernel, no copy
COMMUTATIVE = "commutative"
TRAITS = frozenset(
    {ELEMENTWISE, BROADCAST, INJECTIVE, REDUCTION, OUT_FUSABLE, OPAQUE, VIEW, COMMUTATIVE}
)

REQUIRED = object()
# Default of an attribute added after graphs existed without it: when absent it stays absent
# (the op reads its documented default), so older graphs, goldens and printed text are unchanged.
OMITTED = object()


@dataclass(frozen=True)
class AttrSpec:
    """`kind` is one of int, float, str, bool, ints, floats, strs, dtype, graph, any."""

    kind: str
    default: Any = REQUIRED
    doc: str = ""


InferFn = Callable[[Sequence[TensorType | None], Attrs], Sequence[TensorType]]
RefFn = Callable[[Sequence[np.ndarray | None], Attrs], Sequence[np.ndarray]]
ScalarFn = Callable[[Sequence["Expr"], Attrs, DType], "Expr"]
# (flat index, per-dim index, accumulated value) of one output element -> the statement that
# finishes it. See `LowerRequest.epilogue`.
EpilogueFn = Callable[["Expr", Sequence["Expr"], "Expr"], "Stmt"]


@dataclass(frozen=True)
class LowerRequest:
    """What a lowering gets: the node, its operand and result types, and the schedule.

    Kernel params follow one convention everywhere: `in0..inK` for the node's present inputs in
    order (absent optional inputs are skipped), then `out0..outM`.

    `epilogue` (OUT_FUSABLE ops only; None elsewhere) is how epilogue fusion reaches into the
    anchor's loop nest: once an output element's accumulation is complete, the lowering calls
    `epilogue(flat, dims, acc)` with the element's flat row-major index into out0, its index per
    output dim (expressions; unused ones cost nothing) and its accumulated value, and emits the
    statement it returns in place of the plain result, typically `out0[flat] = f(acc, ...)` with
    f reading extra buffers. The lowering applies it while the element is still hot (per output
    plane or row), never as a second pass over the whole output.
    """

    node: Node
    in_types: tuple[TensorType, ...]  # present inputs only
    out_types: tuple[TensorType, ...]
    schedule: Schedule
    kernel_name: str
    epilogue: EpilogueFn | None = None


LowerFn = Callable[[LowerRequest], "Kernel"]


@dataclass(frozen=True)
class OpDef:
    name: str
    infer: InferFn
    reference: RefFn
    attrs: Mapping[str, AttrSpec] = field(default_factory=dict)
    num_inputs: tuple[int, int] = (1, 1)  # (min, max); max -1 means variadic
    num_outputs: int = 1
    traits: frozenset[str] = frozenset()
    lower: LowerFn | None = None
    # Elementwise ops: the per-element expression, so fused chains compose without new code.
    scalar: ScalarFn | None = None
    foldable: bool = True
    doc: str = ""

    def __post_init__(self) -> None:
        bad = set(self.traits) - TRAITS
        if bad:
            raise ValueError(f"op {self.name}: unknown traits {sorted(bad)}")

    def has(self, trait: str) -> bool:
        return trait in self.traits

    def check_attrs(self, attrs: Attrs, *, loc: str = "") -> Attrs:
        """Fill defaults, reject unknown or missing attributes."""
        where = f" (node {loc!r})" if loc else ""
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise VerifyError(f"op {self.name}{where}: unknown attributes {sorted(unknown)}")
        full = {}
        for k, spec in self.attrs.items():
            if k in attrs:
                full[k] = attrs[k]
            elif spec.default is REQUIRED:
                raise VerifyError(f"op {self.name}{where}: missing attribute {k!r}")
            elif spec.default is OMITTED:
                continue
            else:
                full[k] = spec.default
        return Attrs(full)

    def infer_types(
        self, in_types: Sequence[TensorType | None], attrs: Attrs, *, loc: str = ""
    ) -> tuple[TensorType, ...]:
        lo, hi = self.num_inputs
        n = len(in_types)
        where = f" (node {loc!r})" if loc else ""
        if n < lo or (hi >= 0 and n > hi):
            raise VerifyError(f"op {self.name}{where}: takes {lo}..{hi} inputs, got {n}")
        try:
            out = tuple(self.infer(in_types, attrs))
        except (ShapeError, UnsupportedOpError, VerifyError) as e:
            if loc and loc not in str(e):
                raise type(e)(f"{self.name} node {loc!r}: {e}") from None
            raise
        except (ValueError, IndexError, KeyError, TypeError, AssertionError) as e:
            shapes = ", ".join("-" if t is None else str(t) for t in in_types)
            raise ShapeError(
                f"op {self.name}{where}: cannot infer the output type from ({shapes}): {e}"
            ) from e
        if len(out) != self.num_outputs and self.num_outputs >= 0:
            raise VerifyError(f"op {self.name}: infer returned {len(out)} types")
        return out

    def evaluate(
        self,
        arrays: Sequence[np.ndarray | None],
        attrs: Attrs,
        out_types: Sequence[TensorType] | None = None,
    ) -> tuple[np.ndarray, ...]:
        """Run the reference implementation; results are cast to the inferred dtypes/shapes."""
        results = tuple(self.reference(arrays, attrs))
        if out_types is None:
            return tuple(np.asarray(r) for r in results)
        fixed = []
        for r, t in zip(results, out_types):
            r = np.asarray(r)
            if r.dtype != t.dtype.numpy:
                r = r.astype(t.dtype.numpy)
            if r.shape != t.shape:
                # A reference that disagrees with inference is a bug in one of them: the
                # oracle must not paper over it.
                raise VerifyError(
                    f"op {self.name}: reference returned shape {r.shape}, inference said {t.shape}"
                )
            fixed.append(r)
        return tuple(fixed)


_REGISTRY: dict[str, OpDef] = {}


def register_op(opdef: OpDef) -> OpDef:
    if opdef.name in _REGISTRY:
        raise ValueError(f"op {opdef.name} registered twice")
    _REGISTRY[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    _load_ops()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise VerifyError(f"unknown graph-IR op {name!r}") from None


def all_ops() -> Mapping[str, OpDef]:
    _load_ops()
    return dict(_REGISTRY)


def _load_ops() -> None:
    # Importing the package registers every op (each module calls register_op at import).
    import modelc.ir.ops  # noqa: F401
