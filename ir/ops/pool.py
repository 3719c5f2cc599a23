"""Pooling: max_pool and avg_pool over the spatial dims of an NC... tensor (or, with
`layout="nhwc"`, of an N...C one).

Semantics follow onnxruntime, which the float numerics contract is checked against:

- output sizes as `window.output_size` computes them (with ceil_mode the last window may hang
  past the end pads, but must start inside the input or the begin pads);
- max_pool never selects padding; a window made only of padding yields the dtype's lowest value
  (onnxruntime initializes with `numeric_limits::lowest`);
- avg_pool divides by the taps inside the input (count_include_pad=0) or inside the padded input
  (count_include_pad=1); either way the ceil_mode overhang past the end pads is never counted.

The lowering is the same plane sweep as conv: per (n, c) fill the output plane, then for each
kernel tap combine it into the outputs whose tap reads real input (bounds clipped per tap, no
branch in the inner loop); avg_pool divides at the end by the separable tap count. The NHWC
lowering walks output pixels instead and runs its inner loop over the contiguous channels (the
per-tap range check sits outside it), so it vectorizes whatever the window geometry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelc.errors import UnsupportedTypeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType, from_numpy
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import OMITTED, AttrSpec, InferFn, LowerRequest, OpDef, RefFn, register_op
from modelc.ir.ops.common import params_for
from modelc.ir.ops.nn import channel_loop, loop_kind, require_float, require_rank
from modelc.ir.ops.window import (
    Window,
    layout_of,
    out_loops,
    pad_spatial,
    pixel_loops,
    pixel_taps,
    tap_count,
    tap_loops,
    tap_offset,
    taps,
    to_first,
    to_last,
    window,
)
from modelc.ir.types import TensorType


def _window(op: str, x_shape: Sequence[int], a: Attrs) -> Window:
    kernel = a["kernel"]
    dilations = a["dilations"] if "dilations" in a else (1,) * len(kernel)
    spatial = x_shape[1:-1] if layout_of(a, op) == "nhwc" else x_shape[2:]
    return window(op, spatial, kernel, a["strides"], dilations, a["pads"], ceil_mode=a["ceil_mode"])


def _nhwc_ref(ref: RefFn) -> RefFn:
    """A channels-last reference: the NCHW one on the transposed input, transposed back."""

    def run(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
        if layout_of(a, "pool") != "nhwc":
            return list(ref(xs, a))
        (x,) = xs
        assert x is not None
        nchw = Attrs({k: v for k, v in a.items() if k != "layout"})
        (y,) = ref([np.ascontiguousarray(x.transpose(to_first(x.ndim)))], nchw)
        return [np.ascontiguousarray(y.transpose(to_last(y.ndim)))]

    return run


def _infer(op: str, float_only: bool) -> InferFn:
    def infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
        (x,) = types
        assert x is not None
        require_rank(x, op, 3)
        if float_only:
            require_float(x, op)
        elif x.dtype.kind == "bool":
            raise UnsupportedTypeError(f"{op}: takes a numeric tensor, got bool")
        geo = _window(op, x.shape, a)
        if layout_of(a, op) == "nhwc":
            return [TensorType((x.shape[0], *geo.out_size, x.shape[-1]), x.dtype)]
        return [TensorType((*x.shape[:2], *geo.out_size), x.dtype)]

    return infer


# ---- references --------------------------------------------------------------------------------


def _max_pool_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    (x,) = xs
    assert x is not None
    geo = _window("max_pool", x.shape, a)
    low = np.asarray(from_numpy(x.dtype).min, x.dtype)
    acc = np.full((*x.shape[:2], *geo.out_size), low, x.dtype)
    for tap in taps(pad_spatial(x, geo, low), geo):
        np.maximum(acc, tap, out=acc)
    return [acc]


def _count_bounds(geo: Window, d: int, include_pad: bool) -> tuple[int, int]:
    """The input interval whose taps avg_pool counts along `d`."""
    if include_pad:
        return -geo.pads_begin[d], geo.in_size[d] + geo.pads_end[d]
    return 0, geo.in_size[d]


def _avg_pool_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    (x,) = xs
    assert x is not None
    geo = _window("avg_pool", x.shape, a)
    acc = np.zeros((*x.shape[:2], *geo.out_size), x.dtype)
    for tap in taps(pad_spatial(x, geo, 0), geo):
        acc += tap
    count = np.ones((), np.int64)
    for d in range(geo.rank):
        lo, hi = _count_bounds(geo, d, bool(a["count_include_pad"]))
        start = np.arange(geo.out_size[d]) * geo.strides[d] - geo.pads_begin[d]
        per_dim = np.minimum(start + geo.kernel[d], hi) - np.maximum(start, lo)
        count = np.multiply.outer(count, per_dim)
    return [acc / count.astype(x.dtype)]


# ---- lowering ----------------------------------------------------------------------------------


def _lower_pool(req: LowerRequest, kind: str) -> Kernel:
    if layout_of(req.node.attrs, req.node.op) == "nhwc":
        return _lower_pool_nhwc(req, kind)
    x_t = req.in_types[0]
    a = req.node.attrs
    geo = _window(req.node.op, x_t.shape, a)
    dt = x_t.dtype
    n, c = x_t.shape[:2]
    isz, osz = math.prod(geo.in_size), math.prod(geo.out_size)
    ob, xk, p = Var("ob"), Var("xk"), Var("p")
    vec = loop_kind(req, osz, vector=True)
    combine = L.maximum if kind == "max" else L.add

    def channel(nc: Expr, n_e: Expr, c_e: Expr) -> Stmt:
        def per_tap(ks: list[Expr], bounds: list[tuple[Expr | int, Expr | int]]) -> Stmt:
            def update(os_: list[Expr], o_off: Expr, i_off: Expr) -> Stmt:
                out = L.add(ob, o_off)
                value = combine(L.Load("out0", out, dt), L.Load("in0", L.add(xk, i_off), dt))
                return L.Store("out0", out, value)

            x_off = L.add(L.mul(nc, isz), tap_offset(geo, ks))
            return L.Let(xk, x_off, out_loops(geo, bounds, update, vec))

        # max_pool starts from the lowest value (what an all-padding window yields)
        start = dt.min if kind == "max" else 0
        init = L.Const(float(start) if dt.is_float else int(start), dt)
        fill = L.For(p, L.Const(0), L.Const(osz), L.Store("out0", ob + p, init), vec)
        stmts = [fill, tap_loops(geo, per_tap)]
        if kind == "avg":
            stmts.append(_divide(req, geo, ob, dt, vec))
        return L.Let(ob, L.mul(nc, osz), L.seq(*stmts))

    work = n * c * osz * math.prod(geo.kernel)
    nest = channel_loop(req, n, c, work, channel)
    return Kernel(req.kernel_name, params_for(req), nest, (("op", req.node.op),))


def _divide(req: LowerRequest, geo: Window, ob: Expr, dt: DType, vec: str) -> Stmt:
    """out /= number of counted taps: one constant when no window is clipped, else a product
    of per-dim counts (separable, so no per-element loop over the window)."""
    include_pad = bool(req.node.attrs["count_include_pad"])
    counts = []
    all_const = True
    os_ = [Var(f"o{d}") for d in range(geo.rank)]
    for d in range(geo.rank):
        cnt, const = tap_count(geo, d, os_[d], *_count_bounds(geo, d, include_pad))
        counts.append(cnt)
        all_const = all_const and const
    if all_const:
        p = Var("p")
        osz = math.prod(geo.out_size)
        div = L.Const(float(math.prod(geo.kernel)), dt)
        out = L.add(ob, p)
        return L.For(
            p, L.Const(0), L.Const(osz), L.Store("out0", out, L.Load("out0", out, dt) / div), vec
        )
    total: Expr = L.Const(1)
    for cnt in counts:
        total = L.mul(total, cnt)
    out = L.add(ob, L.flat_index(os_, geo.out_size))
    body: Stmt = L.Store("out0", out, L.Load("out0", out, dt) / L.cast(dt, total))
    for d in reversed(range(geo.rank)):
        kind = vec if d == geo.rank - 1 else "serial"
        body = L.For(os_[d], L.Const(0), L.Const(geo.out_size[d]), body, kind)
    return body


def _lower_pool_nhwc(req: LowerRequest, kind: str) -> Kernel:
    """Channels-last pooling: for each output pixel, start its C channels at the lowest value
    (max) or 0 (avg), combine every tap that reads real input over the contiguous channels
    (vectorized), and for avg divide by the pixel's counted taps (one constant when no window
    is clipped)."""
    x_t = req.in_types[0]
    a = req.node.attrs
    geo = _window(req.node.op, x_t.shape, a)
    dt = x_t.dtype
    n, c = x_t.shape[0], x_t.shape[-1]
    isz, osz = math.prod(geo.in_size), math.prod(geo.out_size)
    ob, xk, ch, cnt = Var("ob"), Var("xk"), Var("ch"), Var("cnt", dt)
    vec = loop_kind(req, c, vector=True)
    combine = L.maximum if kind == "max" else L.add

    def pixel(n_e: Expr, os_: list[Expr], pix: Expr) -> Stmt:
        def per_tap(ks: list[Expr], in_pix: Expr) -> Stmt:
            out = L.add(ob, ch)
            value = combine(L.Load("out0", out, dt), L.Load("in0", L.add(xk, ch), dt))
            sweep = L.For(ch, L.Const(0), L.Const(c), L.Store("out0", out, value), vec)
            return L.Let(xk, L.mul(L.add(L.mul(n_e, isz), in_pix), c), sweep)

        start = dt.min if kind == "max" else 0
        init = L.Const(float(start) if dt.is_float else int(start), dt)
        fill = L.For(ch, L.Const(0), L.Const(c), L.Store("out0", ob + ch, init), vec)
        stmts = [fill, pixel_taps(geo, os_, per_tap)]
        if kind == "avg":
            include_pad = bool(a["count_include_pad"])
            total: Expr = L.Const(1)
            for d in range(geo.rank):
                count, _ = tap_count(geo, d, os_[d], *_count_bounds(geo, d, include_pad))
                total = L.mul(total, count)
            out = L.add(ob, ch)
            divide = L.Store("out0", out, L.Load("out0", out, dt) / cnt)
            stmts.append(
                L.Let(cnt, L.cast(dt, total), L.For(ch, L.Const(0), L.Const(c), divide, vec))
            )
        return L.Let(ob, L.mul(pix, c), L.seq(*stmts))

    work = n * c * osz * math.prod(geo.kernel)
    nest = pixel_loops(n, geo, loop_kind(req, n * geo.out_size[0]), work, pixel)
    return Kernel(req.kernel_name, params_for(req), nest, (("op", req.node.op), ("layout", "nhwc")))


_LAYOUT = AttrSpec(
    "str", OMITTED, doc='"nchw" (default, omitted) or "nhwc": x[N,*I,C] -> out[N,*O,C]'
)

_COMMON = {
    "kernel": AttrSpec("ints", doc="one per spatial dim"),
    "strides": AttrSpec("ints", doc="one per spatial dim"),
    "pads": AttrSpec("ints", doc="all begins, then all ends"),
    "ceil_mode": AttrSpec("bool", False),
    "layout": _LAYOUT,
}

register_op(
    OpDef(
        name="max_pool",
        infer=_infer("max_pool", float_only=False),
        reference=_nhwc_ref(_max_pool_ref),
        attrs={**_COMMON, "dilations": AttrSpec("ints", doc="one per spatial dim")},
        lower=lambda req: _lower_pool(req, "max"),
        doc="N-d max pooling; padding is never selected.",
    )
)

register_op(
    OpDef(
        name="avg_pool",
        infer=_infer("avg_pool", float_only=True),
        reference=_nhwc_ref(_avg_pool_ref),
        attrs={**_COMMON, "count_include_pad": AttrSpec("bool", False)},
        lower=lambda req: _lower_pool(req, "avg"),
        doc="N-d average pooling (onnxruntime divisor rules, see the module docstring).",
    )
)
