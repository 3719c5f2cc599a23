"""Neural-network ops over NC... tensors: conv, batch_norm (inference) and lrn; conv also runs
channels-last (`layout="nhwc"`, set by the `layout` pass).

Pooling lives in `pool.py`; the window geometry conv and pooling share (output sizes, pads,
padding-free loop bounds) lives in `window.py`.

The references are vectorized numpy (conv is im2col through a strided view plus one batched
matmul per image) because the reference interpreter runs whole models with them. The lowerings
are "plane sweeps": for each output channel the kernel loops sit outside the output-plane loops,
so the innermost loop walks one output row and one input row with a loop-invariant weight, and
with stride 1 gcc -O3 vectorizes it. Output ranges are clipped per tap (`window.out_range`), so
padding costs no branch in the inner loop.

The NHWC conv is a direct convolution per output pixel instead: its inner loop runs over the
output channels with the weight packed [*K, C/g, M], so it is contiguous and vectorizes for any
geometry (the plane sweep only vectorizes with stride 1); the per-tap padding check sits
outside that loop. Its `layout` attribute defaults by omission (`OMITTED`): NCHW graphs keep
their printed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from modelc.errors import ShapeError, UnsupportedTypeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import OMITTED, OUT_FUSABLE, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import params_for, same_dtype, unravel
from modelc.ir.ops.window import (
    Window,
    layout_of,
    out_loops,
    pixel_loops,
    pixel_taps,
    range_loop,
    tap_loops,
    tap_offset,
    to_first,
    to_last,
    window,
    windows,
)
from modelc.ir.types import TensorType


def require_float(t: TensorType, op: str) -> None:
    """Float-only ops (quantized forms are separate ops) say so instead of computing garbage."""
    if not t.dtype.is_float:
        raise UnsupportedTypeError(f"{op}: takes a float tensor, got {t.dtype}")


def require_rank(t: TensorType, op: str, minimum: int) -> None:
    if t.rank < minimum:
        raise ShapeError(f"{op}: input must have rank >= {minimum} (N, C, ...), got {t.shape}")


def loop_kind(req: LowerRequest, extent: int, *, vector: bool = False) -> str:
    if vector:
        return "vectorized" if req.schedule.vectorize and extent > 1 else "serial"
    return "parallel" if req.schedule.parallel and extent > 1 else "serial"


ChannelBody = Callable[[Expr, Expr, Expr], Stmt]


def channel_loop(
    req: LowerRequest, n: int, c: int, work: int, body_fn: ChannelBody, name: str = "nc"
) -> Stmt:
    """`for nc in N*C` around `body_fn(nc, n, c)` (n and c as expressions of nc): the one
    parallel loop of every per-channel kernel here, annotated with its work so the renderer
    skips forks that cost more than they gain."""
    nc = Var(name)
    n_e: Expr = L.Const(0) if n == 1 else L.div(nc, c)
    c_e: Expr = nc if n == 1 else L.mod(nc, c)
    body = body_fn(nc, n_e, c_e)
    return L.For(
        nc, L.Const(0), L.Const(n * c), body, loop_kind(req, n * c), (("work", int(work)),)
    )


# ---- conv ----------------------------------------------------------------------------------------


def conv_window(x_shape: Sequence[int], w_shape: Sequence[int], a: Attrs) -> Window:
    return window("conv", x_shape[2:], w_shape[2:], a["strides"], a["dilations"], a["pads"])


def nhwc_weight_perm(rank: int) -> tuple[int, ...]:
    """Permutation packing an NCHW conv weight [M, C/g, *K] into the NHWC one [*K, C/g, M]:
    output channels last, so the kernel's inner loop over them reads it contiguously."""
    return (*range(2, rank), 1, 0)


def _nchw_types(types: Sequence[TensorType | None]) -> list[TensorType | None]:
    """An NHWC conv's operand types as the NCHW conv they compute (x to NC..., w unpacked)."""
    x, w = types[0], types[1]
    assert x is not None and w is not None
    unpack = tuple(int(i) for i in np.argsort(nhwc_weight_perm(w.rank)))
    return [
        TensorType(tuple(x.shape[i] for i in to_first(x.rank)), x.dtype),
        TensorType(tuple(w.shape[i] for i in unpack), w.dtype),
        *types[2:],
    ]


def _infer_conv(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    if layout_of(a, "conv") == "nhwc":
        x, w = types[0], types[1]
        assert x is not None and w is not None
        if x.rank < 3 or w.rank != x.rank:
            raise ShapeError(
                f"conv (nhwc): input {x.shape} needs rank >= 3 and the weight {w.shape} its rank"
            )
        try:
            (y,) = _infer_nchw_conv(_nchw_types(types), a)
        except ShapeError as e:
            raise ShapeError(f"{e} (nhwc conv; shapes shown in NCHW order)") from e
        return [TensorType(tuple(y.shape[i] for i in to_last(y.rank)), y.dtype)]
    return _infer_nchw_conv(types, a)


def _infer_nchw_conv(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    x, w = types[0], types[1]
    b = types[2] if len(types) > 2 else None
    assert x is not None and w is not None
    require_rank(x, "conv", 3)
    require_float(x, "conv")
    dt = same_dtype([x, w, b], "conv")
    if w.rank != x.rank:
        raise ShapeError(f"conv: weight {w.shape} must have the input's rank {x.rank}")
    group = int(a["group"])
    n, c = x.shape[:2]
    m = w.shape[0]
    if group < 1 or c % group or m % group:
        raise ShapeError(
            f"conv: group {group} must divide the input channels {c} and output channels {m}"
        )
    if w.shape[1] != c // group:
        raise ShapeError(
            f"conv: input has {c} channels and group {group}, so the weight needs {c // group} "
            f"input channels (dim 1), but weight shape is {w.shape}"
        )
    if b is not None and b.shape != (m,):
        raise ShapeError(f"conv: bias shape {b.shape} must be ({m},)")
    geo = conv_window(x.shape, w.shape, a)
    return [TensorType((n, m, *geo.out_size), dt)]


def _conv_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    """im2col per image: a strided view of every window, copied once into (G, Cg*K, P), then one
    batched matmul with the (G, Mg, Cg*K) weights; float32 in, float32 accumulation (BLAS)."""
    x, w, b = (list(xs) + [None])[:3]
    assert x is not None and w is not None
    if layout_of(a, "conv") == "nhwc":  # the NCHW reference on transposed operands
        unpack = tuple(int(i) for i in np.argsort(nhwc_weight_perm(w.ndim)))
        xn = np.ascontiguousarray(x.transpose(to_first(x.ndim)))
        nchw = Attrs({k: v for k, v in a.items() if k != "layout"})
        (y,) = _conv_ref([xn, np.ascontiguousarray(w.transpose(unpack)), b], nchw)
        return [np.ascontiguousarray(y.transpose(to_last(y.ndim)))]
    geo = conv_window(x.shape, w.shape, a)
    n, c = x.shape[:2]
    m, g = w.shape[0], int(a["group"])
    cg, mg = c // g, m // g
    ksz, osz = math.prod(geo.kernel), math.prod(geo.out_size)
    d = geo.rank
    wmat = w.reshape(g, mg, cg * ksz)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(geo.pads_begin[i], geo.pads_end[i]) for i in range(d)])
    out = np.empty((n, m, osz), dtype=x.dtype)
    for i in range(n):
        win = windows(xp[i], geo)  # (C, *O, *K)
        # (C, *O, *K) -> (C, *K, *O) -> (G, Cg*K, P)
        perm = (0, *range(1 + d, 1 + 2 * d), *range(1, 1 + d))
        cols = np.ascontiguousarray(win.transpose(perm)).reshape(g, cg * ksz, osz)
        out[i] = np.matmul(wmat, cols).reshape(m, osz)
    if b is not None:
        out += b.reshape(1, m, 1)
    return [out.reshape(n, m, *geo.out_size)]


def _lower_conv(req: LowerRequest) -> Kernel:
    if layout_of(req.node.attrs, "conv") == "nhwc":
        return _lower_conv_nhwc(req)
    return _lower_conv_nchw(req)


def _lower_conv_nchw(req: LowerRequest) -> Kernel:
    """for each (n, oc): fill the output plane with the bias; for ic, taps: wv = w[oc, ic, tap];
    for outputs the tap reads real input for: out[oc, o] += wv * x[ic, o*s + tap*dil - pad].

    With an epilogue (fuse-epilogue), one more sweep over the finished plane applies it in place
    while the plane is still in cache: bias, activation and residual cost no extra kernel and no
    second trip through memory."""
    x_t, w_t = req.in_types[0], req.in_types[1]
    has_bias = len(req.in_types) > 2
    geo = conv_window(x_t.shape, w_t.shape, req.node.attrs)
    dt = x_t.dtype
    n, c = x_t.shape[:2]
    m, g = w_t.shape[0], int(req.node.attrs["group"])
    cg, mg = c // g, m // g
    isz, osz = math.prod(geo.in_size), math.prod(geo.out_size)
    macs = n * m * osz * cg * math.prod(geo.kernel)
    ob, xg, xk, wv, ic, p = Var("ob"), Var("xg"), Var("xk"), Var("wv", dt), Var("ic"), Var("p")
    vec = loop_kind(req, osz, vector=True)

    def mac(out_idx: Expr, in_idx: Expr) -> Stmt:
        acc = L.Load("out0", out_idx, dt)
        return L.Store("out0", out_idx, L.add(acc, L.mul(wv, L.Load("in0", in_idx, dt))))

    def channel(nm: Expr, n_e: Expr, m_e: Expr) -> Stmt:
        def per_tap(ks: list[Expr], bounds: list[tuple[Expr | int, Expr | int]]) -> Stmt:
            if geo.is_dense():  # 1x1, stride 1, no pads: the plane is one contiguous loop
                sweep: Stmt = L.For(p, L.Const(0), L.Const(osz), mac(ob + p, xk + p), vec)
            else:
                sweep = out_loops(
                    geo, bounds, lambda os_, o_off, i_off: mac(ob + o_off, xk + i_off), vec
                )
            w_idx = L.flat_index([m_e, ic, *ks], w_t.shape)
            x_off = L.add(L.add(xg, L.mul(ic, isz)), tap_offset(geo, ks))
            return L.Let(wv, L.Load("in1", w_idx, dt), L.Let(xk, x_off, sweep))

        taps = L.For(ic, L.Const(0), L.Const(cg), tap_loops(geo, per_tap))
        init = L.Load("in2", m_e, dt) if has_bias else L.Const(0.0, dt)
        fill = L.For(p, L.Const(0), L.Const(osz), L.Store("out0", ob + p, init), vec)
        group = L.mul(L.div(m_e, mg), cg) if g > 1 else L.Const(0)
        group_base = L.mul(L.add(L.mul(n_e, c), group), isz)
        plane = L.seq(fill, taps)
        if req.epilogue is not None:
            dims = [n_e, m_e, *unravel(p, geo.out_size)]
            done = req.epilogue(ob + p, dims, L.Load("out0", ob + p, dt))
            plane = L.seq(plane, L.For(p, L.Const(0), L.Const(osz), done, vec))
        return L.Let(ob, L.mul(nm, osz), L.Let(xg, group_base, plane))

    nest = channel_loop(req, n, m, macs, channel, name="nm")
    info = (("op", "conv"), ("macs", macs))
    return Kernel(req.kernel_name, params_for(req), nest, info)


def _lower_conv_nhwc(req: LowerRequest) -> Kernel:
    """Channels-last direct conv: for each output pixel, fill its M channels with the bias;
    for each tap that reads real input and each input channel ic: xv = x[pixel', ic];
    out[pixel, m] += xv * w[tap, ic, m] over the contiguous m (the packed weight row), which
    gcc vectorizes whatever the stride, padding or dilation. A group's channels are one
    contiguous slice of m; depthwise convs (C/g = 1) run the m loop over all groups at once,
    reading x[pixel', m / (M/g)] (just m without a channel multiplier).

    With an epilogue, one more sweep over the pixel's M channels applies it while they are in
    L1; `dims` are the output's NHWC indices (n, *o, m)."""
    x_t, w_t = req.in_types[0], req.in_types[1]
    has_bias = len(req.in_types) > 2
    r = x_t.rank
    geo = window(
        "conv",
        x_t.shape[1:-1],
        w_t.shape[: r - 2],
        req.node.attrs["strides"],
        req.node.attrs["dilations"],
        req.node.attrs["pads"],
    )
    dt = x_t.dtype
    n, c = x_t.shape[0], x_t.shape[-1]
    cg, m = w_t.shape[-2], w_t.shape[-1]
    g = c // cg
    mg = m // g
    isz, ksz, osz = math.prod(geo.in_size), math.prod(geo.kernel), math.prod(geo.out_size)
    macs = n * m * osz * cg * ksz
    ob, xk, wk, xv = Var("ob"), Var("xk"), Var("wk"), Var("xv", dt)
    mm, ic, gi = Var("m"), Var("ic"), Var("gi")
    vec = loop_kind(req, m, vector=True)

    def mac(out_idx: Expr, xval: Expr, w_idx: Expr) -> Stmt:
        acc = L.Load("out0", out_idx, dt)
        return L.Store("out0", out_idx, L.add(acc, L.mul(xval, L.Load("in1", w_idx, dt))))

    def pixel(n_e: Expr, os_: list[Expr], pix: Expr) -> Stmt:
        def per_tap(ks: list[Expr], in_pix: Expr) -> Stmt:
            tap = L.flat_index(ks, geo.kernel)
            if cg == 1:  # depthwise (with any channel multiplier): one loop over every m
                x_idx = L.add(xk, mm if mg == 1 else L.div(mm, mg))
                sweep: Stmt = L.For(
                    mm, L.Const(0), L.Const(m), mac(ob + mm, L.Load("in0", x_idx, dt), wk + mm), vec
                )
                return L.Let(wk, L.mul(tap, m), sweep)
            in_ch: Expr = ic if g == 1 else L.add(L.mul(gi, cg), ic)
            first: Expr = L.Const(0) if g == 1 else L.mul(gi, mg)
            row = L.add(L.mul(L.add(L.mul(tap, cg), ic), m), first)
            inner = L.For(mm, L.Const(0), L.Const(mg), mac(ob + first + mm, xv, wk + mm), vec)
            body: Stmt = L.For(
                ic,
                L.Const(0),
                L.Const(cg),
                L.Let(xv, L.Load("in0", L.add(xk, in_ch), dt), L.Let(wk, row, inner)),
            )
            if g > 1:
                body = L.For(gi, L.Const(0), L.Const(g), body)
            return body

        def per_tap_at(ks: list[Expr], in_pix: Expr) -> Stmt:
            base = L.mul(L.add(L.mul(n_e, isz), in_pix), c)
            return L.Let(xk, base, per_tap(ks, in_pix))

        init = L.Load("in2", mm, dt) if has_bias else L.Const(0.0, dt)
        fill = L.For(mm, L.Const(0), L.Const(m), L.Store("out0", ob + mm, init), vec)
        body = L.seq(fill, pixel_taps(geo, os_, per_tap_at))
        if req.epilogue is not None:
            done = req.epilogue(ob + mm, [n_e, *os_, mm], L.Load("out0", ob + mm, dt))
            body = L.seq(body, L.For(mm, L.Const(0), L.Const(m), done, vec))
        return L.Let(ob, L.mul(pix, m), body)

    nest = pixel_loops(n, geo, loop_kind(req, n * geo.out_size[0]), macs, pixel)
    info = (("op", "conv"), ("macs", macs), ("layout", "nhwc"))
    return Kernel(req.kernel_name, params_for(req), nest, info)


register_op(
    OpDef(
        name="conv",
        infer=_infer_conv,
        reference=_conv_ref,
        attrs={
            "strides": AttrSpec("ints", doc="one per spatial dim"),
            "pads": AttrSpec("ints", doc="all begins, then all ends"),
            "dilations": AttrSpec("ints", doc="one per spatial dim"),
            "group": AttrSpec("int", 1),
            "layout": AttrSpec(
                "str",
                OMITTED,
                doc='"nchw" (default, omitted) or "nhwc": x[N,*I,C], w[*K,C/group,M], out[N,*O,M]',
            ),
        },
        num_inputs=(2, 3),
        traits=frozenset({OUT_FUSABLE}),
        lower=_lower_conv,
        doc="N-d convolution (cross-correlation) x[N,C,*I] * w[M,C/group,*K] + b[M]; with "
        'layout="nhwc" channels-last x[N,*I,C] * w[*K,C/group,M] + b[M] -> [N,*O,M] (the '
        "weight packed output-channels-last so the kernel's inner loop reads it contiguously).",
    )
)


# ---- batch_norm ---------------------------------------------------------------------------------


def _infer_batch_norm(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    x = types[0]
    assert x is not None and all(t is not None for t in types)
    require_rank(x, "batch_norm", 2)
    require_float(x, "batch_norm")
    dt = same_dtype(types, "batch_norm")
    c = x.shape[1]
    for name, t in zip(("scale", "bias", "mean", "var"), types[1:]):
        assert t is not None
        if t.shape != (c,):
            raise ShapeError(f"batch_norm: {name} shape {t.shape} must be ({c},) (channels)")
    return [TensorType(x.shape, dt)]


def _batch_norm_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    """onnxruntime's folding: y = x * (scale / sqrt(var + eps)) + (bias - mean * that)."""
    x, scale, bias, mean, var = xs
    assert x is not None and scale is not None and bias is not None
    assert mean is not None and var is not None
    eps = np.asarray(a["epsilon"], x.dtype)
    k = (scale * (1 / np.sqrt(var + eps))).astype(x.dtype)
    s = (bias - mean * k).astype(x.dtype)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return [x * k.reshape(shape) + s.reshape(shape)]


def _lower_batch_norm(req: LowerRequest) -> Kernel:
    x_t = req.in_types[0]
    dt = x_t.dtype
    n, c = x_t.shape[:2]
    rest = math.prod(x_t.shape[2:])
    eps = L.Const(float(req.node.attrs["epsilon"]), dt)
    k, s, r = Var("k", dt), Var("s", dt), Var("r")

    def channel(nc: Expr, n_e: Expr, c_e: Expr) -> Stmt:
        var = L.Load("in4", c_e, dt)
        idx = L.add(L.mul(nc, rest), r)
        plane = L.For(
            r,
            L.Const(0),
            L.Const(rest),
            L.Store("out0", idx, L.add(L.mul(L.Load("in0", idx, dt), k), s)),
            loop_kind(req, rest, vector=True),
        )
        shift = L.sub(L.Load("in2", c_e, dt), L.mul(L.Load("in3", c_e, dt), k))
        scale = L.mul(L.Load("in1", c_e, dt), L.call("rsqrt", L.add(var, eps)))
        return L.Let(k, scale, L.Let(s, shift, plane))

    nest = channel_loop(req, n, c, x_t.size, channel)
    return Kernel(req.kernel_name, params_for(req), nest, (("op", "batch_norm"),))


register_op(
    OpDef(
        name="batch_norm",
        infer=_infer_batch_norm,
        reference=_batch_norm_ref,
        attrs={"epsilon": AttrSpec("float", 1e-5)},
        num_inputs=(5, 5),
        lower=_lower_batch_norm,
        doc="Inference batch normalization over channels (axis 1); params are tensors, so a "
        "lowering never assumes they are constants.",
    )
)


# ---- lrn ---------------------------------------------------------------------------------------


def _infer_lrn(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    (x,) = types
    assert x is not None
    require_rank(x, "lrn", 2)
    require_float(x, "lrn")
    if int(a["size"]) < 1:
        raise ShapeError(f"lrn: size must be >= 1, got {a['size']}")
    return [TensorType(x.shape, x.dtype)]


def _lrn_halves(size: int) -> tuple[int, int]:
    """Channels below and above c in the window (ONNX: floor and ceil of (size-1)/2)."""
    return (size - 1) // 2, size // 2


def _lrn_ref(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    """y = x * (bias + alpha/size * square_sum)^-beta, square_sum over the channel window;
    one vectorized add per window offset."""
    (x,) = xs
    assert x is not None
    size = int(a["size"])
    below, above = _lrn_halves(size)
    c = x.shape[1]
    sq = x * x
    pad = [(0, 0), (below, above)] + [(0, 0)] * (x.ndim - 2)
    sqp = np.pad(sq, pad)
    acc = np.zeros_like(x)
    for j in range(size):
        acc += sqp[:, j : j + c]
    dt = x.dtype.type
    base = dt(a["bias"]) + dt(a["alpha"] / size) * acc
    return [x * np.power(base, dt(-a["beta"]))]


def _lower_lrn(req: LowerRequest) -> Kernel:
    x_t = req.in_types[0]
    a = req.node.attrs
    dt = x_t.dtype
    n, c = x_t.shape[:2]
    rest = math.prod(x_t.shape[2:])
    size = int(a["size"])
    below, above = _lrn_halves(size)
    r, cc = Var("r"), Var("cc")
    ob, lo, hi = Var("ob"), Var("clo"), Var("chi")

    def channel(nc: Expr, n_e: Expr, c_e: Expr) -> Stmt:
        kind = loop_kind(req, rest, vector=True)
        out = L.add(ob, r)
        fill = L.For(r, L.Const(0), L.Const(rest), L.Store("out0", out, L.Const(0.0, dt)), kind)
        xv = L.Load("in0", L.add(L.mul(L.add(L.mul(n_e, c), cc), rest), r), dt)
        accum = range_loop(
            cc,
            lo,
            hi,
            L.For(
                r,
                L.Const(0),
                L.Const(rest),
                L.Store("out0", out, L.add(L.Load("out0", out, dt), L.mul(xv, xv))),
                kind,
            ),
        )
        base = L.add(
            L.Const(float(a["bias"]), dt),
            L.mul(L.Const(float(a["alpha"]) / size, dt), L.Load("out0", out, dt)),
        )
        y = L.mul(L.Load("in0", out, dt), L.call("pow", base, L.Const(-float(a["beta"]), dt)))
        finish = L.For(r, L.Const(0), L.Const(rest), L.Store("out0", out, y), kind)
        body = L.seq(fill, accum, finish)
        body = L.Let(hi, L.minimum(c, L.add(c_e, above + 1)), body)
        body = L.Let(lo, L.maximum(0, L.sub(c_e, below)), body)
        return L.Let(ob, L.mul(nc, rest), body)

    nest = channel_loop(req, n, c, x_t.size * (size + 1), channel)
    return Kernel(req.kernel_name, params_for(req), nest, (("op", "lrn"),))


register_op(
    OpDef(
        name="lrn",
        infer=_infer_lrn,
        reference=_lrn_ref,
        attrs={
            "size": AttrSpec("int"),
            "alpha": AttrSpec("float", 1e-4),
            "beta": AttrSpec("float", 0.75),
            "bias": AttrSpec("float", 1.0),
        },
        lower=_lower_lrn,
        doc="Local response normalization across channels (axis 1), ONNX formula.",
    )
)
