"""A lowered model: kernels, the order they run in, and the buffers they touch.

`lower-to-loops` turns a Graph into a Program; program passes (memory planning, later kernel
tuning) rewrite it; a renderer prints it. Buffers are flat byte ranges named after graph values:
inputs and outputs are the caller's, constants live in the weights blob, temporaries live in
one workspace arena at offsets chosen by the memory planner, and views alias another buffer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

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
