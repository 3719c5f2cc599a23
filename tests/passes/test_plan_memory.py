"""The memory planner: no two simultaneously live buffers overlap (except an input and the output
a launch writes over it in place), the arena is never below the lower bound, and `best-fit` is
never worse than `greedy-by-size`."""

from __future__ import annotations

import numpy as np
import pytest

from modelc.ir import GraphBuilder, TensorType
from modelc.ir.dtypes import f32
from modelc.ir.graph import Graph
from modelc.ir.program import Program
from modelc.passes.plan_memory import (
    ORDERS,
    arena,
    best_fit,
    greedy_by_size,
    lifetimes,
    lower_bound,
    place,
)
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline

SLOT = 64 * 64 * 4


def _chain(n: int, branch: bool = False) -> Graph:
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


def _plan(graph: Graph, options: str = "") -> tuple[Program, dict]:
    ctx = PassContext(verify=True)
    spec = f"lower-to-loops,plan-memory{{{options}}}" if options else "lower-to-loops,plan-memory"
    prog = run_pipeline(graph, parse_pipeline(spec), ctx)
    return prog, ctx.reports["plan-memory"]


def check_no_overlap(prog: Program) -> None:
    """Buffers live at the same launch never share bytes, unless that launch writes one over
    the other in place (then they start at the same offset)."""
    spans = lifetimes(prog)
    offs = prog.plan.offsets
    shared = set()
    for la in prog.launches:
        for pi, qi in la.inplace:
            shared.add(frozenset((prog.root(la.args[pi]).name, la.args[qi])))
    names = list(offs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            (s1, e1), (s2, e2) = spans[a], spans[b]
            if e1 < s2 or e2 < s1:
                continue
            if frozenset((a, b)) in shared:
                assert offs[a] == offs[b], f"in-place pair {a}, {b} not on the same bytes"
                continue
            a0, a1 = offs[a], offs[a] + prog.buffer_map[a].nbytes
            b0, b1 = offs[b], offs[b] + prog.buffer_map[b].nbytes
            assert a1 <= b0 or b1 <= a0, f"{a} and {b} overlap while both live"


def test_chain_in_place_uses_one_slot() -> None:
    prog, report = _plan(_chain(8))
    assert prog.plan.strategy == "best-fit"
    assert prog.plan.naive_bytes == 7 * SLOT  # 8 kernels, the last writes the output
    assert prog.plan.workspace_bytes == SLOT  # every elementwise kernel overwrites its input
    assert prog.plan.lower_bound_bytes == SLOT
    assert report["lower_bound_separate_bytes"] == 2 * SLOT
    assert report["inplace_launches"] == 6  # launches 1..6 (0 reads x, 7 writes the output)
    check_no_overlap(prog)


def test_chain_without_in_place_reuses_two_slots() -> None:
    for options in ("strategy=greedy-by-size", "inplace=false"):
        prog, report = _plan(_chain(8), options)
        assert prog.plan.workspace_bytes == 2 * SLOT
        assert report["inplace_launches"] == 0
        assert not any(la.inplace for la in prog.launches)
        check_no_overlap(prog)


def test_long_lived_branch_keeps_its_slot() -> None:
    prog, _ = _plan(_chain(8, branch=True))
    check_no_overlap(prog)
    # neg1 is read again by the final add, so relu2 must not overwrite it.
    assert prog.plan.lower_bound_bytes <= prog.plan.workspace_bytes < prog.plan.naive_bytes
    assert prog.plan.workspace_bytes == 2 * SLOT


def test_naive_strategy_is_the_sum() -> None:
    prog, _ = _plan(_chain(5), "strategy=naive")
    assert prog.plan.workspace_bytes == prog.plan.naive_bytes


def test_unknown_strategy_names_the_choices() -> None:
    from modelc.errors import PipelineError

    with pytest.raises(PipelineError, match="best-fit, greedy-by-size, naive"):
        parse_pipeline("plan-memory{strategy=magic}")


def _random_intervals(rng: np.random.Generator) -> tuple[dict[str, int], dict]:
    n = int(rng.integers(2, 30))
    sizes = {f"b{i}": int(rng.integers(1, 10)) * 64 for i in range(n)}
    spans = {}
    for b in sizes:
        s = int(rng.integers(0, 20))
        spans[b] = (s, s + int(rng.integers(0, 6)))
    return sizes, spans


def _assert_disjoint_while_live(sizes: dict, spans: dict, offs: dict) -> None:
    for a in sizes:
        for b in sizes:
            if a >= b:
                continue
            (s1, e1), (s2, e2) = spans[a], spans[b]
            if e1 < s2 or e2 < s1:
                continue
            assert offs[a] + sizes[a] <= offs[b] or offs[b] + sizes[b] <= offs[a], (a, b)


def test_placements_of_random_intervals_never_overlap() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        sizes, spans = _random_intervals(rng)
        bound = lower_bound(sizes, spans, 30)
        greedy = greedy_by_size(sizes, spans)
        _assert_disjoint_while_live(sizes, spans, greedy)
        for key in ORDERS.values():
            order = sorted(sizes, key=lambda b, key=key: key(b, sizes[b], spans[b]))
            for fit in (True, False):
                offs = place(sizes, spans, order, best=fit)
                _assert_disjoint_while_live(sizes, spans, offs)
                assert arena(offs, sizes) >= bound
        best, how = best_fit(sizes, spans)
        _assert_disjoint_while_live(sizes, spans, best)
        assert bound <= arena(best, sizes) <= arena(greedy, sizes), how


def _random_graph(seed: int) -> Graph:
    """A random DAG of elementwise (some broadcasting), matmul, transpose and reshape nodes
    over (16, 16) tensors, several of them graph outputs."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"random{seed}")
    values = [b.add_input("x", TensorType((16, 16), f32))]
    bias = b.add_constant(rng.standard_normal(16).astype(np.float32), "bias")
    for _ in range(int(rng.integers(6, 25))):
        kind = int(rng.integers(0, 6))
        a = values[int(rng.integers(0, len(values)))]
        c = values[int(rng.integers(max(0, len(values) - 4), len(values)))]
        if kind == 0:
            v = b.add(["relu", "neg", "sigmoid", "exp"][int(rng.integers(0, 4))], a)
        elif kind == 1:
            v = b.add(["add", "mul", "sub"][int(rng.integers(0, 3))], a, c)
        elif kind == 2:
            v = b.add("add", a, bias)
        elif kind == 3:
            v = b.add("matmul", a, c)
        elif kind == 4:
            v = b.add("transpose", a, perm=(1, 0))
        else:
            v = b.add("reshape", b.add("reshape", a, shape=(256,)), shape=(16, 16))
        values.append(v)
    outs = {values[-1], values[int(rng.integers(1, len(values)))]}
    b.set_outputs(sorted(outs))
    return b.build()


@pytest.mark.parametrize("seed", range(25))
def test_random_graphs_never_overlap_while_live(seed: int) -> None:
    graph = _random_graph(seed)
    greedy, _ = _plan(graph, "strategy=greedy-by-size")
    check_no_overlap(greedy)
    best, _ = _plan(graph)
    check_no_overlap(best)
    assert best.plan.lower_bound_bytes <= best.plan.workspace_bytes
    assert best.plan.workspace_bytes <= greedy.plan.workspace_bytes


def test_replanning_is_stable() -> None:
    """plan-memory run twice gives the same plan and the same in-place launches."""
    prog, _ = _plan(_chain(8, branch=True))
    again = run_pipeline(prog, parse_pipeline("plan-memory"), PassContext())
    assert again.plan == prog.plan
    assert [la.inplace for la in again.launches] == [la.inplace for la in prog.launches]
