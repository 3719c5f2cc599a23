"""A lowered model: kernels, the order they run in, and the buffers they touch.

`lower-to-loops` turns a Graph into a Program; program passes (memory planning, later kernel
tuning) rewrite it; a renderer prints it. Buffers are flat byte ranges named after graph values:
inputs and outputs are the caller's, constants live in the weights blob, temporaries live in
one workspace arena at offsets chosen by the memory planner, and views alias another buffer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from modelc.ir import loop as L
from modelc.ir.dtypes import DType
from modelc.ir.loop import Kernel

INPUT, OUTPUT, CONSTANT, TEMP = "input", "output", "constant", "temp"
ALIGN = 64  # bytes: a cache line, and enough for any vector load


def align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


@dataclass(frozen=True)
class Buffer:
    name: str
    dtype: DType
    shape: tuple[int, ...]
    kind: str  # input | output | constant | temp
    # A view (reshape) shares the bytes of `alias_of` (itself never a view).
    alias_of: str | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


@dataclass(frozen=True)
class Launch:
    """One kernel call: `kernel(*args)` with args in the kernel's param order."""

    kernel: str
    args: tuple[str, ...]
    # The graph nodes this launch computes (their locs), for reports and per-layer traces.
    nodes: tuple[str, ...] = ()
    op: str = ""
    # (input position, output position) pairs of `args` that the memory plan placed on the same
    # bytes: the kernel overwrites that input in place. Renderers call `launch_call`, which folds
    # each such output into its input so no two parameters alias (C `restrict` stays valid).
    inplace: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class MemoryPlan:
    """Workspace offsets of temporaries, with the figures users size hardware by."""

    offsets: Mapping[str, int]
    workspace_bytes: int
    naive_bytes: int  # every temporary in its own slot
    lower_bound_bytes: int  # largest total of simultaneously live temporaries
    strategy: str = ""


@dataclass(frozen=True, eq=False)
class Program:
    name: str
    kernels: tuple[Kernel, ...]
    launches: tuple[Launch, ...]
    buffers: tuple[Buffer, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]  # buffer names, in graph-output order
    constants: Mapping[str, np.ndarray] = field(default_factory=dict)
    plan: MemoryPlan | None = None
    # User-facing output names (a graph output that needed a copy has a different buffer name).
    output_names: tuple[str, ...] = ()

    @cached_property
    def buffer_map(self) -> Mapping[str, Buffer]:
        return {b.name: b for b in self.buffers}

    @cached_property
    def kernel_map(self) -> Mapping[str, Kernel]:
        return {k.name: k for k in self.kernels}

    def root(self, name: str) -> Buffer:
        b = self.buffer_map[name]
        return self.buffer_map[b.alias_of] if b.alias_of else b

    def replace(self, **changes: object) -> Program:
        fields = {
            "name": self.name,
            "kernels": self.kernels,
            "launches": self.launches,
            "buffers": self.buffers,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "constants": self.constants,
            "plan": self.plan,
            "output_names": self.output_names,
        }
        fields.update(changes)
        return Program(**fields)  # type: ignore[arg-type]

    def __str__(self) -> str:
        """Readable listing: buffers, launches, then each kernel's loop nest."""
        from modelc.ir.printer import print_kernel

        lines = [f"program @{self.name} {{"]
        for b in self.buffers:
            where = ""
            if b.alias_of:
                where = f" = view(%{b.alias_of})"
            elif self.plan and b.name in self.plan.offsets:
                where = f" @ workspace+{self.plan.offsets[b.name]}"
            shape = ",".join(map(str, b.shape))
            lines.append(f"  {b.kind} %{b.name}: {b.dtype}[{shape}]{where}")
        for la in self.launches:
            lines.append(f"  call {la.kernel}({', '.join('%' + a for a in la.args)})")
        lines.append("}")
        for k in self.kernels:
            lines.append(print_kernel(k))
        return "\n".join(lines)


# ---- in-place launches ---------------------------------------------------------------------------


def inplace_variant(kernel: Kernel, pairs: tuple[tuple[int, int], ...]) -> Kernel:
    """`kernel` with each output param of `pairs` folded into its input param.

    The planner only pairs params where the kernel reads the input at exactly the index it
    writes the output (passes/plan_memory_inplace.py proves it), so storing through the input's
    pointer computes the same values. One pointer instead of two equal ones keeps every
    parameter `restrict` (two aliasing `restrict` pointers would be undefined behaviour) and
    spares the C compiler a run-time overlap check.
    """
    rename = {kernel.params[q].name: kernel.params[p].name for p, q in pairs}
    dropped = {q for _, q in pairs}
    written = {p for p, _ in pairs}
    params = tuple(
        replace(prm, is_output=True) if i in written else prm
        for i, prm in enumerate(kernel.params)
        if i not in dropped
    )

    def stmt(s: L.Stmt) -> L.Stmt:
        if isinstance(s, L.Store):
            return replace(s, buffer=rename.get(s.buffer, s.buffer))
        if isinstance(s, L.Seq):
            return L.Seq(tuple(stmt(x) for x in s.stmts))
        if isinstance(s, (L.For, L.Let, L.Allocate)):
            return replace(s, body=stmt(s.body))
        if isinstance(s, L.If):
            return replace(s, then=stmt(s.then), else_=None if s.else_ is None else stmt(s.else_))
        raise TypeError(f"inplace_variant: unknown statement {s!r}")

    suffix = "".join(f"_{p}_{q}" for p, q in pairs)
    return Kernel(f"{kernel.name}_inplace{suffix}", params, stmt(kernel.body), kernel.info)


def launch_call(program: Program, launch: Launch) -> tuple[Kernel, tuple[str, ...]]:
    """The kernel a renderer emits for `launch` and the buffers to pass it: the launched kernel
    and args, or for an in-place launch its `inplace_variant` without the folded outputs."""
    kernel = program.kernel_map[launch.kernel]
    if not launch.inplace:
        return kernel, launch.args
    dropped = {q for _, q in launch.inplace}
    args = tuple(a for i, a in enumerate(launch.args) if i not in dropped)
    return inplace_variant(kernel, launch.inplace), args
