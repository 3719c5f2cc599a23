"""conv_transpose: the transposed (fractionally strided) N-d convolution, ONNX ConvTranspose.

Every input element x[n, c, i] scatters `w[c, m, k] * x` to output position
`i*stride + k*dilation - pad_begin` of each output channel m of its group; outputs no tap reaches
(output_padding, strides larger than the kernel) hold only the bias. Attributes are the static
normal form the frontend resolves `auto_pad` / `output_shape` into (docs/op_catalog.md):
non-negative pads and output_padding, one entry per spatial dim.

The geometry is conv's with the roles of input and output swapped: a tap k of input position i
lands on output `i*s + k*d - pb`, exactly where conv's output i would read its tap. So the lowering
reuses `window.py` on a mirrored `Window` (its "input" is our output plane, its "output" our input
plane): per (n, m) plane, fill with the bias, then for each input channel and tap sweep the input
positions whose target lies inside the output (clipped ranges, no branch in the inner loop). The
writes stay inside the plane of one (n, m), so the parallel loop over planes is race-free. A fused
epilogue (OUT_FUSABLE) runs as one more sweep over each finished plane, as in conv.

The reference is one batched matmul per group (W^T @ X gives every tap's contribution) followed by
one strided add per tap into the uncropped output (col2im), then the crop by the pads.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import ShapeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import OUT_FUSABLE, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import params_for, same_dtype, unravel
from modelc.ir.ops.nn import channel_loop, loop_kind, require_float, require_rank
from modelc.ir.ops.window import Window, out_loops, tap_loops, tap_offset
from modelc.ir.types import TensorType

OP = "conv_transpose"


def _ints(a: Attrs, name: str, n: int, minimum: int) -> tuple[int, ...]:
    vals = tuple(int(v) for v in a[name])
    if len(vals) != n:
        raise ShapeError(f"{OP}: {name} has {len(vals)} entries, expected {n}")
    if any(v < minimum for v in vals):
        raise ShapeError(f"{OP}: {name} {vals} must all be >= {minimum}")
    return vals


def geometry(x_shape: Sequence[int], w_shape: Sequence[int], a: Attrs) -> Window:
    """The mirrored window: in_size = output spatial size, out_size = input spatial size.

    Output length per dim: (in - 1) * stride + (kernel - 1) * dilation + 1 + output_padding
    - pad_begin - pad_end, as ONNX defines it.
    """
    in_size = tuple(int(d) for d in x_shape[2:])
    kernel = tuple(int(d) for d in w_shape[2:])
    n = len(in_size)
    if n == 0:
        raise ShapeError(f"{OP}: input needs at least one spatial dim (rank >= 3)")
    strides = _ints(a, "strides", n, 1)
    dilations = _ints(a, "dilations", n, 1)
    pads = _ints(a, "pads", 2 * n, 0)
    extra = _ints(a, "output_padding", n, 0)
    out = []
    for d in range(n):
        full = (in_size[d] - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1 + extra[d]
        o = full - pads[d] - pads[n + d]
        if o < 1:
            raise ShapeError(
                f"{OP}: spatial dim {d} would have {o} outputs: input {in_size[d]}, kernel "
                f"{kernel[d]}, stride {strides[d]}, dilation {dilations[d]}, output_padding "
                f"{extra[d]} give {full}, and the pads {pads[d]}+{pads[n + d]} crop more than that"
            )
        out.append(o)
    return Window(tuple(out), kernel, strides, dilations, pads[:n], pads[n:], in_size)


def _infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    x, w = types[0], types[1]
    b = types[2] if len(types) > 2 else None
    assert x is not None and w is not None
    require_rank(x, OP, 3)
    require_float(x, OP)
    dt = same_dtype([x, w, b], OP)
    if w.rank != x.rank:
        raise ShapeError(f"{OP}: weight {w.shape} must have the input's rank {x.rank}")
    group = int(a["group"])
    n, c = x.shape[:2]
    if group < 1 or c % group:
        raise ShapeError(f"{OP}: group {group} must divide the input channels {c}")
    if w.shape[0] != c:
        raise ShapeError(
            f"{OP}: the weight's dim 0 must be the {c} input channels (layout [C, M/group, *k]), "
            f"but weight shape is {w.shape}"
        )
    m = w.shape[1] * group
    if b is not None and b.shape != (m,):
        raise ShapeError(f"{OP}: bias shape {b.shape} must be ({m},)")
    geo = geometry(x.shape, w.shape, a)
    return [TensorType((n, m, *geo.in_size), dt)]


def _reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    x, w, b = (list(xs) + [None])[:3]
    assert x is not None and w is not None
    geo = geometry(x.shape, w.shape, a)
    d = geo.rank
    n, c = x.shape[:2]
    g = int(a["group"])
    cg, mg = c // g, w.shape[1]
    m = mg * g
    ksz, isz = math.prod(geo.kernel), math.prod(geo.out_size)
    # (G, Mg*K, Cg) @ (N, G, Cg, P) -> (N, G, Mg*K, P): every tap's contribution per input pixel
    wt = w.reshape(g, cg, mg * ksz).transpose(0, 2, 1)
    cols = np.matmul(wt[None], x.reshape(n, g, cg, isz)).reshape(n, m, *geo.kernel, *geo.out_size)
    # The uncropped output: long enough for every tap and for pads_begin + the output size.
    full_len = [
        max(
            (geo.out_size[i] - 1) * geo.strides[i] + geo.span(i), geo.pads_begin[i] + geo.in_size[i]
        )
        for i in range(d)
    ]
    full = np.zeros((n, m, *full_len), dtype=x.dtype)
    for offs in itertools.product(*(range(k) for k in geo.kernel)):
        sl = tuple(
            slice(
                k * geo.dilations[i],
                k * geo.dilations[i] + (geo.out_size[i] - 1) * geo.strides[i] + 1,
                geo.strides[i],
            )
            for i, k in enumerate(offs)
        )
        full[(slice(None), slice(None), *sl)] += cols[(slice(None), slice(None), *offs)]
    crop = tuple(slice(geo.pads_begin[i], geo.pads_begin[i] + geo.in_size[i]) for i in range(d))
    out = np.ascontiguousarray(full[(slice(None), slice(None), *crop)])
    if b is not None:
        out += b.reshape((1, m) + (1,) * d)
    return [out]


def _lower(req: LowerRequest) -> Kernel:
    """for each (n, m): fill the output plane with the bias; for ic, taps: wv = w[ic, m, tap];
    for the input positions whose target is inside the output:
    out[m, i*s + tap*dil - pad] += wv * x[ic, i]."""
    x_t, w_t = req.in_types[0], req.in_types[1]
    has_bias = len(req.in_types) > 2
    geo = geometry(x_t.shape, w_t.shape, req.node.attrs)
    dt = x_t.dtype
    n, c = x_t.shape[:2]
    g = int(req.node.attrs["group"])
    cg, mg = c // g, w_t.shape[1]
    m = mg * g
    isz, osz = math.prod(geo.out_size), math.prod(geo.in_size)
    macs = n * c * mg * isz * math.prod(geo.kernel)
    ob, xg, xc, yk, wv = Var("ob"), Var("xg"), Var("xc"), Var("yk"), Var("wv", dt)
    ic, p = Var("ic"), Var("p")
    vec, vec_out = loop_kind(req, isz, vector=True), loop_kind(req, osz, vector=True)
    # 1x1 kernel, stride 1, no pads and no extra outputs: input and output planes coincide.
    dense = (
        all(k == 1 for k in geo.kernel)
        and all(s == 1 for s in geo.strides)
        and not any(geo.pads_begin)
        and geo.in_size == geo.out_size
    )

    def mac(out_idx: Expr, in_idx: Expr) -> Stmt:
        acc = L.Load("out0", out_idx, dt)
        return L.Store("out0", out_idx, L.add(acc, L.mul(wv, L.Load("in0", in_idx, dt))))

    def channel(nm: Expr, n_e: Expr, m_e: Expr) -> Stmt:
        gi: Expr = L.div(m_e, mg) if g > 1 else L.Const(0)
        mi: Expr = L.mod(m_e, mg) if g > 1 else m_e

        def per_tap(ks: list[Expr], bounds: list[tuple[Expr | int, Expr | int]]) -> Stmt:
            if dense:
                sweep: Stmt = L.For(p, L.Const(0), L.Const(isz), mac(ob + p, xc + p), vec)
            else:
                sweep = out_loops(
                    geo, bounds, lambda os_, x_off, y_off: mac(yk + y_off, xc + x_off), vec
                )
            w_idx = L.flat_index([L.add(L.mul(gi, cg), ic), mi, *ks], w_t.shape)
            return L.Let(wv, L.Load("in1", w_idx, dt), L.Let(yk, ob + tap_offset(geo, ks), sweep))

        taps = L.For(
            ic,
            L.Const(0),
            L.Const(cg),
            L.Let(xc, L.add(xg, L.mul(ic, isz)), tap_loops(geo, per_tap)),
        )
        init = L.Load("in2", m_e, dt) if has_bias else L.Const(0.0, dt)
        fill = L.For(p, L.Const(0), L.Const(osz), L.Store("out0", ob + p, init), vec_out)
        group_base = L.mul(L.add(L.mul(n_e, c), L.mul(gi, cg)), isz)
        plane = L.seq(fill, taps)
        if req.epilogue is not None:  # fused epilogue: one sweep over the finished plane
            dims = [n_e, m_e, *unravel(p, geo.in_size)]
            done = req.epilogue(ob + p, dims, L.Load("out0", ob + p, dt))
            plane = L.seq(plane, L.For(p, L.Const(0), L.Const(osz), done, vec_out))
        return L.Let(ob, L.mul(nm, osz), L.Let(xg, group_base, plane))

    nest = channel_loop(req, n, m, macs, channel, name="nm")
    info = (("op", OP), ("macs", macs))
    return Kernel(req.kernel_name, params_for(req), nest, info)


register_op(
    OpDef(
        name=OP,
        infer=_infer,
        reference=_reference,
        attrs={
            "strides": AttrSpec("ints", doc="one per spatial dim"),
            "pads": AttrSpec("ints", doc="cropped from the output: all begins, then all ends"),
            "dilations": AttrSpec("ints", doc="one per spatial dim"),
            "group": AttrSpec("int", 1),
            "output_padding": AttrSpec("ints", doc="extra outputs at the end of each dim"),
        },
        num_inputs=(2, 3),
        traits=frozenset({OUT_FUSABLE}),
        lower=_lower,
        doc="N-d transposed convolution x[N,C,*I], w[C,M/group,*K], b[M] -> [N,M,*O] with "
        "O = (I-1)*stride + (K-1)*dilation + 1 + output_padding - pad_begin - pad_end.",
    )
)
