"""plan-memory: place every temporary buffer in one workspace arena.

Lifetimes come from the launch order: a buffer lives from the launch that writes it to the last
launch that reads it or any view of it (inclusive, so a kernel never reads and writes
overlapping bytes). Two buffers may share bytes when their lifetimes are disjoint.

Strategies:
- `greedy-by-size` (default): largest buffers first, each at the lowest offset that fits
  between already-placed buffers whose lifetimes overlap it (the TFLite Micro planner's idea;
  close to the lower bound on CNNs);
- `naive`: every temporary in its own slot; the baseline the report compares against.

The report gives the arena size, the naive sum, and the lower bound (the largest total of
simultaneously live temporaries), so the planner's quality is a number, not a claim. The MCU
target uses the same planner: there, the arena is the SRAM bill.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelc.errors import PipelineError
from modelc.ir.program import TEMP, MemoryPlan, Program, align
from modelc.passes.registry import PROGRAM, Pass, PassContext, register_pass


def lifetimes(program: Program) -> dict[str, tuple[int, int]]:
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


def lower_bound(sizes: dict[str, int], spans: dict[str, tuple[int, int]], steps: int) -> int:
    live = [0] * (steps + 1)
    for b, (s, e) in spans.items():
        for t in range(s, e + 1):
            live[t] += sizes[b]
    return max(live, default=0)


def greedy_by_size(sizes: dict[str, int], spans: dict[str, tuple[int, int]]) -> dict[str, int]:
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, start, end)
    offsets: dict[str, int] = {}
    for b in sorted(sizes, key=lambda b: (-sizes[b], spans[b][0], b)):
        s, e = spans[b]
        conflicts = sorted((off, sz) for off, sz, ps, pe in placed if not (pe < s or e < ps))
        best = None
        cursor = 0
        # Best fit among the gaps between conflicting buffers, else the end.
        for off, sz in conflicts:
            gap = off - cursor
            if gap >= sizes[b] and (best is None or gap < best[1]):
                best = (cursor, gap)
            cursor = max(cursor, off + sz)
        offset = best[0] if best is not None else cursor
        offsets[b] = offset
        placed.append((offset, sizes[b], s, e))
    return offsets


def naive(sizes: dict[str, int]) -> dict[str, int]:
    offsets, cursor = {}, 0
    for b in sizes:
        offsets[b] = cursor
        cursor += sizes[b]
    return offsets


STRATEGIES = ("greedy-by-size", "naive")


@register_pass
@dataclass(frozen=True)
class PlanMemory(Pass):
    name = "plan-memory"
    level = PROGRAM
    produces = PROGRAM
    strategy: str = "greedy-by-size"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise PipelineError(
                f"plan-memory: unknown strategy {self.strategy!r} (one of {', '.join(STRATEGIES)})"
            )

    def run(self, program: Program, ctx: PassContext) -> Program:
        spans = lifetimes(program)
        sizes = {b: align(program.buffer_map[b].nbytes) for b in spans}
        if self.strategy == "naive":
            offsets = naive(sizes)
        else:
            offsets = greedy_by_size(sizes, spans)
        workspace = max((offsets[b] + sizes[b] for b in offsets), default=0)
        plan = MemoryPlan(
            offsets=offsets,
            workspace_bytes=workspace,
            naive_bytes=sum(sizes.values()),
            lower_bound_bytes=lower_bound(sizes, spans, len(program.launches)),
            strategy=self.strategy,
        )
        ctx.report(
            self.name,
            workspace_bytes=plan.workspace_bytes,
            naive_bytes=plan.naive_bytes,
            lower_bound_bytes=plan.lower_bound_bytes,
        )
        return program.replace(plan=plan)
