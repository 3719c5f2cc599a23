"""The memory planner: no two simultaneously live buffers overlap, and the arena is smaller
than the naive sum on a chain, never smaller than the lower bound."""

from __future__ import annotations

import numpy as np

from modelc.ir import GraphBuilder, TensorType
from modelc.ir.dtypes import f32
from modelc.passes.plan_memory import greedy_by_size, lifetimes
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline


def _chain(n: int, branch: bool = False):
    b = GraphBuilder("chain")
    x = b.add_input("x", TensorType((64, 64), f32))
    v = x
    keep = None
    for i in range(n):
        v = b.add("relu" if i % 2 else "neg", v)
        if branch and i == 1:
            keep = v
    if keep is not None:
        v = b.add("add", v, keep)
    b.set_outputs([v])
    return b.build()


def _plan(graph, strategy="greedy-by-size"):
    ctx = PassContext()
    prog = run_pipeline(
        graph, parse_pipeline(f"lower-to-loops,plan-memory{{strategy={strategy}}}"), ctx
    )
    return prog


def _check_no_overlap(prog) -> None:
    spans = lifetimes(prog)
    offs = prog.plan.offsets
    names = list(offs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            (s1, e1), (s2, e2) = spans[a], spans[b]
            if e1 < s2 or e2 < s1:
                continue
            a0, a1 = offs[a], offs[a] + prog.buffer_map[a].nbytes
            b0, b1 = offs[b], offs[b] + prog.buffer_map[b].nbytes
            assert a1 <= b0 or b1 <= a0, f"{a} and {b} overlap while both live"


def test_chain_reuses_two_slots() -> None:
    prog = _plan(_chain(8))
    slot = 64 * 64 * 4
    assert prog.plan.naive_bytes == 7 * slot  # 8 kernels, the last writes the output
    assert prog.plan.workspace_bytes == 2 * slot
    assert prog.plan.lower_bound_bytes == 2 * slot
    _check_no_overlap(prog)


def test_long_lived_branch_keeps_its_slot() -> None:
    prog = _plan(_chain(8, branch=True))
    _check_no_overlap(prog)
    assert prog.plan.lower_bound_bytes <= prog.plan.workspace_bytes < prog.plan.naive_bytes


def test_naive_strategy_is_the_sum() -> None:
    prog = _plan(_chain(5), "naive")
    assert prog.plan.workspace_bytes == prog.plan.naive_bytes


def test_greedy_random_intervals_never_overlap() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(2, 30))
        sizes = {f"b{i}": int(rng.integers(1, 10)) * 64 for i in range(n)}
        spans = {}
        for b in sizes:
            s = int(rng.integers(0, 20))
            spans[b] = (s, s + int(rng.integers(0, 6)))
        offs = greedy_by_size(sizes, spans)
        for a in sizes:
            for b in sizes:
                if a >= b:
                    continue
                (s1, e1), (s2, e2) = spans[a], spans[b]
                if e1 < s2 or e2 < s1:
                    continue
                assert offs[a] + sizes[a] <= offs[b] or offs[b] + sizes[b] <= offs[a]
