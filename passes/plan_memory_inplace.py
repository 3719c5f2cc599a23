"""In-place reuse for plan-memory: which launches may write their output over an input.

A kernel may overwrite input `p` with output `q` when every element of `q` is written exactly
once, from values of `p` read at that same element in the same iteration, and nothing reads `p`
or `q` anywhere else. That is what elementwise kernels (plain, broadcast with the full-shape
operand, fused chains) and per-channel affine kernels (batch_norm) do. Rather than trusting op
traits, `inplace_pairs` proves it on the kernel's loop IR, so a new op or a fused kernel gets
in-place reuse exactly when its code allows it, and never when it does not:

1. exactly one `Store` to `q`, and no `Load` of `q`;
2. the store's index is the row-major flat index of all loops around it (each loop from 0 to a
   constant extent), so each iteration writes a different element and every element once;
3. every `Load` of `p` uses that same index and is evaluated before the store in the same
   iteration: in the stored value, or in a `Let` value or `If` condition the store sits in;
4. `p` and `q` have the same dtype and size.

`inplace_groups` then picks the pairs a program can use: the input's bytes must be a workspace
temporary that dies at this launch (no later reader of it or of any view of it), and no other
argument of the launch may touch those bytes. Chains (relu -> add -> relu) share one slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from modelc.ir import loop as L
from modelc.ir.program import TEMP, Program


def inplace_pairs(kernel: L.Kernel) -> tuple[tuple[int, int], ...]:
    """(input param index, output param index) pairs the kernel computes correctly with both
    params on the same bytes; each param in at most one pair."""
    sites = _Sites()
    sites.stmt(kernel.body, (), ())
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for qi, q in enumerate(kernel.params):
        writes = sites.stores.get(q.name, [])
        if not q.is_output or q.name in sites.loads or len(writes) != 1:
            continue
        store = writes[0]
        if not _row_major(store):
            continue
        for pi, p in enumerate(kernel.params):
            if p.is_output or pi in used or (p.dtype, p.size) != (q.dtype, q.size):
                continue
            reads = sites.loads.get(p.name, [])
            if all(_before_in_same_iteration(r, store) for r in reads):
                pairs.append((pi, qi))
                used.add(pi)
                break
    return tuple(pairs)


@dataclass(frozen=True)
class _Site:
    """A Load or Store: its index, the loops around it (outermost first), and the statements
    evaluated on the way to it (`path`, by identity). A load's `anchor` is the statement that
    evaluates it (a Store's value, a Let's value, an If's condition); None for loop bounds."""

    index: L.Expr
    loops: tuple[L.For, ...]
    path: tuple[int, ...]
    anchor: int | None = None


def _before_in_same_iteration(load: _Site, store: _Site) -> bool:
    """The load reads the element the store writes, inside the same loops, from a statement
    the store is nested in (or the store itself): so it runs before the write, per iteration."""
    return (
        load.anchor is not None
        and load.anchor in store.path
        and load.index == store.index
        and tuple(map(id, load.loops)) == tuple(map(id, store.loops))
    )


def _row_major(store: _Site) -> bool:
    """The store's index is the row-major flat index of all loops around it (from 0, constant
    extents): every iteration writes its own element, once."""
    if not all(
        isinstance(f.start, L.Const) and f.start.value == 0 and isinstance(f.extent, L.Const)
        for f in store.loops
    ):
        return False
    extents = [int(f.extent.value) for f in store.loops]  # type: ignore[attr-defined]
    return store.index == L.flat_index([f.var for f in store.loops], extents)


class _Sites:
    """Every Load and Store of a kernel body, by buffer name."""

    def __init__(self) -> None:
        self.stores: dict[str, list[_Site]] = {}
        self.loads: dict[str, list[_Site]] = {}

    def stmt(self, s: L.Stmt, loops: tuple[L.For, ...], path: tuple[int, ...]) -> None:
        here = (*path, id(s))
        if isinstance(s, L.Store):
            self.stores.setdefault(s.buffer, []).append(_Site(s.index, loops, here))
            self.expr(s.index, loops, here, id(s))
            self.expr(s.value, loops, here, id(s))
        elif isinstance(s, L.Seq):
            for x in s.stmts:
                self.stmt(x, loops, here)
        elif isinstance(s, L.For):
            self.expr(s.start, loops, here, None)
            self.expr(s.extent, loops, here, None)
            self.stmt(s.body, (*loops, s), here)
        elif isinstance(s, L.Let):
            self.expr(s.value, loops, here, id(s))
            self.stmt(s.body, loops, here)
        elif isinstance(s, L.If):
            self.expr(s.cond, loops, here, id(s))
            self.stmt(s.then, loops, here)
            if s.else_ is not None:
                self.stmt(s.else_, loops, here)
        elif isinstance(s, L.Allocate):
            self.stmt(s.body, loops, here)
        else:
            raise TypeError(f"plan-memory: unknown statement {s!r}")

    def expr(
        self, e: L.Expr, loops: tuple[L.For, ...], path: tuple[int, ...], anchor: int | None
    ) -> None:
        for ld in _loads(e):
            self.loads.setdefault(ld.buffer, []).append(_Site(ld.index, loops, path, anchor))


def _loads(e: L.Expr) -> Iterator[L.Load]:
    if isinstance(e, L.Load):
        yield e
        yield from _loads(e.index)
    elif isinstance(e, L.Select):
        for x in (e.cond, e.a, e.b):
            yield from _loads(x)
    elif isinstance(e, L.BinOp):
        yield from _loads(e.a)
        yield from _loads(e.b)
    elif isinstance(e, (L.UnOp, L.Cast)):
        yield from _loads(e.a)
    elif isinstance(e, L.Call):
        for x in e.args:
            yield from _loads(x)


@dataclass(frozen=True)
class InplaceGroups:
    """Temporaries that share one slot because launches overwrite them in place.

    `slot[b]` names the group's representative for every temporary root `b`; `spans` and
    `sizes` describe each group as one interval (first write of its first member to last read
    of its last member); `launches` maps a launch index to its (input, output) arg positions.
    """

    slot: dict[str, str]
    spans: dict[str, tuple[int, int]]
    sizes: dict[str, int]
    launches: dict[int, tuple[tuple[int, int], ...]]


def inplace_groups(
    program: Program, spans: dict[str, tuple[int, int]], sizes: dict[str, int]
) -> InplaceGroups:
    """Choose in-place launches in program order and merge their buffers into groups.

    An output joins its input's group when the kernel proves the pair safe (`inplace_pairs`),
    the input is a workspace temporary whose whole group dies at this launch, the output is a
    fresh workspace temporary, and no other argument of the launch shares the input's bytes.
    """
    slot = {b: b for b in spans}
    group_span = dict(spans)
    chosen: dict[int, tuple[tuple[int, int], ...]] = {}
    proven: dict[str, tuple[tuple[int, int], ...]] = {}
    for t, la in enumerate(program.launches):
        kernel = program.kernel_map[la.kernel]
        if la.kernel not in proven:
            proven[la.kernel] = inplace_pairs(kernel)
        roots = [program.root(a) for a in la.args]
        picked: list[tuple[int, int]] = []
        for pi, qi in proven[la.kernel]:
            p, q = roots[pi], roots[qi]
            if p.kind != TEMP or q.kind != TEMP or la.args[qi] != q.name:
                continue
            if sum(r.name == p.name for r in roots) != 1 or slot[q.name] != q.name:
                continue
            g = slot[p.name]
            if group_span[g][1] != t or sizes[p.name] != sizes[q.name]:
                continue
            slot[q.name] = g
            group_span[g] = (group_span[g][0], max(group_span[g][1], spans[q.name][1]))
            del group_span[q.name]
            picked.append((pi, qi))
        if picked:
            chosen[t] = tuple(picked)
    group_sizes = {g: sizes[g] for g in group_span}
    return InplaceGroups(slot, group_span, group_sizes, chosen)
