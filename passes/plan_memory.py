"""plan-memory: place every temporary buffer in one workspace arena.

Lifetimes come from the launch order: a buffer lives from the launch that writes it to the last
launch that reads it or any view of it (inclusive, so a kernel never reads and writes
overlapping bytes unless it is proven to do so safely, below). Two buffers may share bytes when
their lifetimes are disjoint.

Strategies:
- `best-fit` (default): in-place reuse, then the best of several offset placements.
  In-place: a launch whose kernel provably reads an input at exactly the element it writes
  (elementwise and per-channel kernels, fused chains) writes its output over that input when the
  input dies there (plan_memory_inplace.py). The renderer then folds the two params into one
  (`ir.program.launch_call`), so `restrict` stays valid. Placement: greedy-by-size and
  first-fit/best-fit placements in several orders (by size, by lifetime, by start), with and
  without the in-place groups; the smallest arena wins. Since plain greedy-by-size is one of
  the candidates, `best-fit` is never worse than `greedy-by-size`. On a tie the in-place plan
  wins: it touches fewer distinct bytes, so more of them stay in cache.
- `greedy-by-size`: largest buffers first, each at the smallest gap that fits between
  already-placed buffers whose lifetimes overlap it (the TFLite Micro planner's idea; close to
  the lower bound on CNNs); no in-place reuse;
- `naive`: every temporary in its own slot; the baseline the report compares against.

`inplace=false` turns in-place reuse off in `best-fit`, to measure what it brings.

The report gives the arena size, the naive sum, and the lower bound: the largest total of
simultaneously live temporaries, where an output written in place over its input counts once
(the bound of any plan that may use the same in-place launches; without in-place it is
`lower_bound_separate_bytes`). So the planner's quality is a number, not a claim. The MCU target
uses the same planner: there, the arena is the SRAM bill.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from modelc.errors import PipelineError
from modelc.ir.program import TEMP, MemoryPlan, Program, align
from modelc.passes.plan_memory_inplace import inplace_groups
from modelc.passes.registry import PROGRAM, Pass, PassContext, register_pass

Spans = dict[str, tuple[int, int]]


def lifetimes(program: Program) -> Spans:
    """[first write, last read] launch indices of every temporary root buffer."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for t, la in enumerate(program.launches):
        kernel = program.kernel_map[la.kernel]
        for arg, param in zip(la.args, kernel.params):
            root = program.root(arg)
            if root.kind != TEMP:
                continue
            if param.is_output:
                first.setdefault(root.name, t)
            last[root.name] = t
    return {b: (first.get(b, last[b]), last[b]) for b in last}


def lower_bound(sizes: dict[str, int], spans: Spans, steps: int) -> int:
    """The largest total size of buffers live at one launch: no placement does better."""
    live = [0] * (steps + 1)
    for b, (s, e) in spans.items():
        for t in range(s, e + 1):
            live[t] += sizes[b]
    return max(live, default=0)


def arena(offsets: dict[str, int], sizes: dict[str, int]) -> int:
    return max((offsets[b] + sizes[b] for b in offsets), default=0)


def place(
    sizes: dict[str, int], spans: Spans, order: list[str], best: bool = True
) -> dict[str, int]:
    """Place buffers in `order`, each in a gap between already-placed buffers whose lifetimes
    overlap its own: the smallest gap that fits (`best`) or the lowest one (first fit), else
    above them all."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, start, end)
    offsets: dict[str, int] = {}
    for b in order:
        s, e = spans[b]
        size = sizes[b]
        conflicts = sorted((off, sz) for off, sz, ps, pe in placed if not (pe < s or e < ps))
        chosen: tuple[int, int] | None = None  # (offset, gap)
        cursor = 0
        for off, sz in conflicts:
            gap = off - cursor
            if gap >= size and (chosen is None or (best and gap < chosen[1])):
                chosen = (cursor, gap)
            cursor = max(cursor, off + sz)
        offsets[b] = chosen[0] if chosen is not None else cursor
        placed.append((offsets[b], size, s, e))
    return offsets


def greedy_by_size(sizes: dict[str, int], spans: Spans) -> dict[str, int]:
    """Largest first (ties: earlier first), each in the smallest gap that fits."""
    return place(sizes, spans, sorted(sizes, key=lambda b: (-sizes[b], spans[b][0], b)))


# Orders the portfolio tries: each a sort key over (name, size, (start, end)).
ORDERS: dict[str, Callable[[str, int, tuple[int, int]], tuple[Any, ...]]] = {
    "size": lambda b, z, se: (-z, se[0], b),
    "size-longest": lambda b, z, se: (-z, se[0] - se[1], se[0], b),
    "area": lambda b, z, se: (-z * (se[1] - se[0] + 1), se[0], b),
    "longest": lambda b, z, se: (se[0] - se[1], -z, se[0], b),
    "start": lambda b, z, se: (se[0], -z, b),
}


def best_fit(sizes: dict[str, int], spans: Spans) -> tuple[dict[str, int], str]:
    """The smallest arena among the ORDERS x {best fit, first fit} placements, and which."""
    best: tuple[int, dict[str, int], str] | None = None
    for name, key in ORDERS.items():
        order = sorted(sizes, key=lambda b, key=key: key(b, sizes[b], spans[b]))
        for fit in (True, False):
            offsets = place(sizes, spans, order, best=fit)
            total = arena(offsets, sizes)
            if best is None or total < best[0]:
                best = (total, offsets, f"{name}/{'best' if fit else 'first'}-fit")
    if best is None:
        return {}, "empty"
    return best[1], best[2]


def naive(sizes: dict[str, int]) -> dict[str, int]:
    offsets, cursor = {}, 0
    for b in sizes:
        offsets[b] = cursor
        cursor += sizes[b]
    return offsets


STRATEGIES = ("best-fit", "greedy-by-size", "naive")


@register_pass
@dataclass(frozen=True)
class PlanMemory(Pass):
    name = "plan-memory"
    level = PROGRAM
    produces = PROGRAM
    strategy: str = "best-fit"
    inplace: bool = True  # best-fit only: let elementwise launches overwrite a dying input

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise PipelineError(
                f"plan-memory: unknown strategy {self.strategy!r} (one of {', '.join(STRATEGIES)})"
            )

    def run(self, program: Program, ctx: PassContext) -> Program:
        spans = lifetimes(program)
        sizes = {b: align(program.buffer_map[b].nbytes) for b in spans}
        steps = len(program.launches)
        groups = inplace_groups(program, spans, sizes)
        inplace: dict[int, tuple[tuple[int, int], ...]] = {}
        detail = ""
        if self.strategy == "naive":
            offsets = naive(sizes)
        elif self.strategy == "greedy-by-size":
            offsets = greedy_by_size(sizes, spans)
        else:
            offsets, detail = best_fit(sizes, spans)
            if self.inplace and groups.launches:
                shared, how = best_fit(groups.sizes, groups.spans)
                if arena(shared, groups.sizes) <= arena(offsets, sizes):
                    offsets = {b: shared[groups.slot[b]] for b in sizes}
                    inplace, detail = groups.launches, f"{how}+inplace"
        launches = tuple(
            replace(la, inplace=inplace.get(t, ())) if la.inplace or t in inplace else la
            for t, la in enumerate(program.launches)
        )
        plan = MemoryPlan(
            offsets=offsets,
            workspace_bytes=arena(offsets, sizes),
            naive_bytes=sum(sizes.values()),
            lower_bound_bytes=lower_bound(groups.sizes, groups.spans, steps),
            strategy=self.strategy,
        )
        ctx.report(
            self.name,
            strategy=self.strategy,
            placement=detail,
            workspace_bytes=plan.workspace_bytes,
            naive_bytes=plan.naive_bytes,
            lower_bound_bytes=plan.lower_bound_bytes,
            lower_bound_separate_bytes=lower_bound(sizes, spans, steps),
            inplace_launches=len(inplace),
        )
        return program.replace(launches=launches, plan=plan)
