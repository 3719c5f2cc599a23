"""Lowering of `fused` nodes (see `ir/ops/fused.py`): composing scalar expressions.

Both kinds build the same thing per output element: the body's ops as ONE expression tree,
made of each op's `OpDef.scalar`, with the group's external inputs as loads. A value the tree
uses more than once (an intermediate read by two ops, an input read twice at the same index,
an output that later ops also read) is bound once with `Let`, so nothing is recomputed.

Values narrower than 32 bits (i8, i16, f16, ...) are rounded to their type where an op's result
feeds another op inline, because C computes them in int/float: without the cast, a fused kernel
would skip the wrap-around or rounding the unfused ops do and lose bit-exactness.

- `lower_elementwise`: one pass over the output (a flat loop when every operand has the output's
  element count, else a nest over the shape that needs per-dim indexes for broadcasting).
- `lower_epilogue`: the anchor's own lowering with `LowerRequest.epilogue` set; the anchor's
  buffers are renamed to the fused node's parameters afterwards (its inputs may sit anywhere in
  the fused input list, or appear twice).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from modelc.errors import UnsupportedOpError
from modelc.ir import loop as L
from modelc.ir.dtypes import DType
from modelc.ir.graph import Graph, Node
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import VIEW, LowerRequest, get_op
from modelc.ir.ops.common import broadcast_index, params_for, pointwise_kernel, unravel

Leaf = Callable[[str, Node], Expr]  # (external value, the body node reading it) -> expression
Lets = list[tuple[Var, Expr]]


def _narrow(dt: DType) -> bool:
    """Types C does not compute in: the result of an op must be rounded back to them."""
    return dt.kind != "bool" and dt.bits < 32


def _rounded(e: Expr, dt: DType) -> Expr:
    if not _narrow(dt) or isinstance(e, (L.Load, L.Var, L.Const)):
        return e
    if isinstance(e, L.Cast) and e.dtype == dt:
        return e
    return L.Cast(dt, e)


def literal(body: Graph, name: str) -> Expr:
    """A single-element body constant as a literal of its dtype."""
    c = body.constant_map[name]
    dt = c.value.type.dtype
    v = c.data.reshape(-1)[0].item()
    if dt.kind == "bool":
        return L.Const(bool(v), dt)
    return L.Const(float(v) if dt.is_float else int(v), dt)


def compose(
    body: Graph,
    nodes: Sequence[Node],
    env: Mapping[str, Expr],
    leaf: Leaf,
    stored: Sequence[str],
) -> tuple[Lets, dict[str, Expr]]:
    """Expressions for the values of `nodes` (in order), given `env` (values already known, e.g.
    the anchor's accumulator) and `leaf` (how a body input or constant is read by a node).
    Returns the `Let` bindings to wrap around the stores, and every value's expression.
    `stored` are the values about to be stored: one that ops also read is bound, and with
    several outputs all are (so every load of an element happens before any store to it)."""
    produced = {o.name for n in nodes for o in n.outputs}
    uses: Counter[str] = Counter(i for n in nodes for i in n.inputs if i)
    uses.update(stored)
    lets: Lets = []

    def bind(e: Expr, dt: DType) -> Expr:
        v = Var(f"fz{len(lets)}", dt)
        lets.append((v, e))
        return v

    values: dict[str, Expr] = {}
    for name, e in env.items():
        cheap = isinstance(e, (L.Var, L.Const))
        values[name] = bind(e, e.dtype) if uses[name] > 1 and not cheap else e

    def is_leaf(i: str) -> bool:
        return bool(i) and i not in env and i not in produced

    # The same element of an input feeding several ops is loaded once.
    reads = Counter(leaf(i, n) for n in nodes for i in n.inputs if is_leaf(i))
    shared = {e: bind(e, e.dtype) for e, c in reads.items() if c > 1 and isinstance(e, L.Load)}

    several = len(stored) > 1
    types = body.types
    for n in nodes:
        args = []
        for i in n.inputs:
            if not i:
                continue
            e = values[i] if i in values else leaf(i, n)
            args.append(shared.get(e, e))
        opdef = get_op(n.op)
        if opdef.has(VIEW):  # a view keeps the flat order: same element, same expression
            e = args[0]
        else:
            dt = types[next(i for i in n.inputs if i)].dtype  # what the op's own lowering passes
            scalar = opdef.scalar
            assert scalar is not None, f"{n.op} has no scalar expression"
            # An op may use an operand twice itself (silu = x * sigmoid(x)): bind such operands
            # unless they are trivial, found by building the op once over placeholders.
            marks = [Var(f"_arg{k}", a.dtype) for k, a in enumerate(args)]
            counts = _var_counts(scalar(marks, n.attrs, dt))
            args = [
                bind(a, a.dtype) if counts[m.name] > 1 and not _trivial(a) else a
                for a, m in zip(args, marks)
            ]
            e = scalar(args, n.attrs, dt)
        out = n.output
        if uses[out.name] > 1 or (several and out.name in stored):
            values[out.name] = bind(e, out.type.dtype)
        else:
            values[out.name] = _rounded(e, out.type.dtype)
    return lets, values


def _trivial(e: Expr) -> bool:
    """Cheap enough to repeat: a variable, a literal or a load (the C compiler reuses loads)."""
    return isinstance(e, (L.Var, L.Const, L.Load))


def _var_counts(e: Expr) -> Counter[str]:
    """How often each variable occurs in `e`."""
    out: Counter[str] = Counter()
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, L.Var):
            out[x.name] += 1
        elif isinstance(x, L.Load):
            stack.append(x.index)
        elif isinstance(x, (L.BinOp, L.Select)):
            stack.extend((x.cond, x.a, x.b) if isinstance(x, L.Select) else (x.a, x.b))
        elif isinstance(x, (L.UnOp, L.Cast)):
            stack.append(x.a)
        elif isinstance(x, L.Call):
            stack.extend(x.args)
    return out


def wrap_lets(lets: Lets, body: Stmt) -> Stmt:
    """`let v0 = e0 in let v1 = e1 in ... body`."""
    for v, e in reversed(lets):
        body = L.Let(v, e, body)
    return body


def _kernel_name(req: LowerRequest, body: Graph) -> str:
    suffix = re.sub(r"\W", "_", body.name)[:40]
    return f"{req.kernel_name}_{suffix}" if suffix else req.kernel_name


Info = tuple[tuple[str, int | str], ...]


def _info(req: LowerRequest, body: Graph, extra: Info = ()) -> Info:
    ops = "+".join(n.op for n in body.nodes)
    return (("op", "fused"), ("kind", req.node.attrs["kind"]), ("ops", ops), *extra)


# ---- kind = elementwise --------------------------------------------------------------------------


def lower_elementwise(req: LowerRequest) -> Kernel:
    """out_j[i] = (composed body)(in_0[b_0(i)], ...) for every element i of the outputs.

    Every body value has the outputs' element count, so an operand of that count is read at the
    flat index whatever its shape (equal counts under broadcasting differ only by 1-dims).
    Operands with fewer elements broadcast: they need the per-dim index of the node reading
    them, which the loop nest provides when that node's shape is the nest's shape (the pass
    keeps it so) and `unravel` computes otherwise."""
    body: Graph = req.node.attrs["body"]
    types = body.types
    size = req.out_types[0].size
    pos = {v.name: k for k, v in enumerate(body.inputs)}
    broadcasting = [
        n.output.type.shape
        for n in body.nodes
        if any(i and i in pos and types[i].size != size for i in n.inputs)
    ]
    domain = Counter(broadcasting).most_common(1)[0][0] if broadcasting else req.out_types[0].shape

    def element(flat: Expr, dims: list[Expr]) -> Stmt:
        def leaf(name: str, reader: Node) -> Expr:
            if name in body.constant_map:
                return literal(body, name)
            t = types[name]
            if t.size == size:
                return L.Load(f"in{pos[name]}", flat, t.dtype)
            shape = reader.output.type.shape
            idx = dims if shape == domain else unravel(flat, shape)
            return L.Load(f"in{pos[name]}", broadcast_index(idx, t.shape, len(shape)), t.dtype)

        lets, values = compose(body, body.nodes, {}, leaf, body.outputs)
        stores = [L.Store(f"out{j}", flat, values[o]) for j, o in enumerate(body.outputs)]
        return wrap_lets(lets, L.seq(stores))

    ops = sum(1 for n in body.nodes if not get_op(n.op).has(VIEW))
    return dataclasses.replace(
        pointwise_kernel(
            req,
            domain,
            element,
            flat=not broadcasting,
            inner_work=max(1, ops),
            info=_info(req, body),
        ),
        name=_kernel_name(req, body),
    )


# ---- kind = epilogue -----------------------------------------------------------------------------


def lower_epilogue(req: LowerRequest) -> Kernel:
    """The anchor's lowering, finishing each output element with the composed rest of the body.

    The epilogue reads extra operands by flat index (same element count as the output: a
    residual) or by the output element's per-dim index (a per-channel bias broadcasts to the
    channel index, which the anchor has at hand). It writes `out0` in place of the accumulator."""
    body: Graph = req.node.attrs["body"]
    types = body.types
    anchor, rest = body.nodes[0], body.nodes[1:]
    pos = {v.name: k for k, v in enumerate(body.inputs)}
    present = [i for i in anchor.inputs if i]
    out_t = req.out_types[0]
    applied: list[bool] = []

    def epilogue(flat: Expr, dims: Sequence[Expr], acc: Expr) -> Stmt:
        applied.append(True)

        def leaf(name: str, reader: Node) -> Expr:
            if name in body.constant_map:
                return literal(body, name)
            t = types[name]
            idx = flat if t.size == out_t.size else broadcast_index(dims, t.shape, out_t.rank)
            # "fin" = fused input: renamed to in{k} below, with the anchor's own buffers.
            return L.Load(f"fin{pos[name]}", idx, t.dtype)

        final = body.outputs[0]
        lets, values = compose(body, rest, {anchor.output.name: acc}, leaf, [final])
        return wrap_lets(lets, L.Store("out0", flat, values[final]))

    anchor_req = LowerRequest(
        node=anchor,
        in_types=tuple(types[i] for i in present),
        out_types=(anchor.output.type,),
        schedule=req.schedule,
        kernel_name=req.kernel_name,
        epilogue=epilogue,
    )
    lower = get_op(anchor.op).lower
    if lower is None:
        raise UnsupportedOpError(f"{anchor.describe()}: op {anchor.op} has no lowering")
    kernel = lower(anchor_req)
    if not applied:
        raise UnsupportedOpError(
            f"{req.node.describe()}: the lowering of {anchor.op} ignores LowerRequest.epilogue "
            "although the op is out-fusable; compile without fuse-epilogue or teach the "
            "lowering to apply it"
        )
    names = {f"in{j}": f"in{pos[name]}" for j, name in enumerate(present)}
    names.update({f"fin{k}": f"in{k}" for k in range(len(body.inputs))})
    extra = tuple(kv for kv in kernel.info if kv[0] != "op")
    return Kernel(
        _kernel_name(req, body),
        params_for(req),
        rename_buffers(kernel.body, names),
        _info(req, body, extra),
    )


# ---- buffer renaming -----------------------------------------------------------------------------


def rename_buffers(s: Stmt, names: Mapping[str, str]) -> Stmt:
    """`s` with every load/store buffer in `names` renamed (all at once, so swaps work)."""

    def ex(e: Expr) -> Expr:
        if isinstance(e, L.Load):
            return L.Load(names.get(e.buffer, e.buffer), ex(e.index), e.dtype)
        if isinstance(e, L.BinOp):
            return L.BinOp(e.op, ex(e.a), ex(e.b))
        if isinstance(e, L.UnOp):
            return L.UnOp(e.op, ex(e.a))
        if isinstance(e, L.Call):
            return L.Call(e.fn, tuple(ex(a) for a in e.args), e.dtype)
        if isinstance(e, L.Cast):
            return L.Cast(e.dtype, ex(e.a))
        if isinstance(e, L.Select):
            return L.Select(ex(e.cond), ex(e.a), ex(e.b))
        return e  # Const, Var

    def st(s: Stmt) -> Stmt:
        if isinstance(s, L.Seq):
            return L.Seq(tuple(st(x) for x in s.stmts))
        if isinstance(s, L.For):
            return dataclasses.replace(s, start=ex(s.start), extent=ex(s.extent), body=st(s.body))
        if isinstance(s, L.Store):
            return L.Store(names.get(s.buffer, s.buffer), ex(s.index), ex(s.value))
        if isinstance(s, L.Let):
            return L.Let(s.var, ex(s.value), st(s.body))
        if isinstance(s, L.Allocate):
            return dataclasses.replace(s, body=st(s.body))
        if isinstance(s, L.If):
            other = None if s.else_ is None else st(s.else_)
            return L.If(ex(s.cond), st(s.then), other)
        raise TypeError(f"rename_buffers: unknown statement {s!r}")

    return st(s)
