"""Sliding-window geometry shared by conv and pooling.

Conv, max_pool and avg_pool (and later their quantized forms) agree on one geometry: N-d
windows with strides, dilations and begin/end pads, and ONNX output sizes (with ceil_mode the last
window must start inside the input or the begin padding, as onnxruntime computes it). This module
holds that geometry once: attribute checks, output sizes, the tap-by-tap numpy views the
references sum over, and the loop bounds that let a lowering skip padding without a bounds check in
its inner loop. The channels-last (NHWC) lowerings share the outer pixel loops and the per-tap
range checks at the end of the module.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from modelc.errors import ShapeError
from modelc.ir import loop as L
from modelc.ir.loop import Expr


@dataclass(frozen=True)
class Window:
    """The geometry of one windowed op over the spatial dims of an NC... tensor."""

    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    out_size: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.in_size)

    def span(self, d: int) -> int:
        """Extent of the dilated kernel along dim `d`."""
        return (self.kernel[d] - 1) * self.dilations[d] + 1

    def overhang(self, d: int) -> int:
        """End padding the last window really reads along `d` (ceil_mode can read past pads)."""
        last = (self.out_size[d] - 1) * self.strides[d] + self.span(d)
        return max(self.pads_end[d], last - self.in_size[d] - self.pads_begin[d])

    def is_dense(self) -> bool:
        """Whether every output reads exactly the input point it sits on (1x1, stride 1, no
        pads): the spatial loops then collapse into one flat loop."""
        return (
            all(k == 1 for k in self.kernel)
            and all(s == 1 for s in self.strides)
            and not any(self.pads_begin)
            and not any(self.pads_end)
        )


def _ints(value: Sequence[int], n: int, what: str, op: str, *, minimum: int) -> tuple[int, ...]:
    vals = tuple(int(v) for v in value)
    if len(vals) != n:
        raise ShapeError(f"{op}: {what} has {len(vals)} entries, expected {n}")
    if any(v < minimum for v in vals):
        raise ShapeError(f"{op}: {what} {vals} must all be >= {minimum}")
    return vals


def output_size(
    in_size: int, span: int, stride: int, pad_begin: int, pad_end: int, ceil_mode: bool
) -> int:
    """ONNX/onnxruntime output length of one windowed dim (`span` = dilated kernel extent)."""
    room = in_size + pad_begin + pad_end - span
    if room < 0:
        return 0
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    if (out - 1) * stride >= in_size + pad_begin:  # the last window must not start in end pads
        out -= 1
    return out


def window(
    op: str,
    in_size: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int],
    *,
    ceil_mode: bool = False,
) -> Window:
    """Check window attributes against the spatial input size and compute the output size."""
    n = len(in_size)
    if n == 0:
        raise ShapeError(f"{op}: input needs at least one spatial dim (rank >= 3)")
    k = _ints(kernel, n, "kernel", op, minimum=1)
    s = _ints(strides, n, "strides", op, minimum=1)
    d = _ints(dilations, n, "dilations", op, minimum=1)
    p = _ints(pads, 2 * n, "pads (all begins, then all ends)", op, minimum=0)
    pb, pe = p[:n], p[n:]
    out = []
    for i in range(n):
        span = (k[i] - 1) * d[i] + 1
        o = output_size(in_size[i], span, s[i], pb[i], pe[i], ceil_mode)
        if o < 1:
            raise ShapeError(
                f"{op}: spatial dim {i} of size {in_size[i]} (pads {pb[i]}+{pe[i]}) is smaller "
                f"than the dilated kernel extent {span}"
            )
        out.append(o)
    return Window(tuple(in_size), k, s, d, pb, pe, tuple(out))


# ---- numpy side ---------------------------------------------------------------------------------


def pad_spatial(x: np.ndarray, w: Window, value: float | int) -> np.ndarray:
    """`x` padded on its trailing spatial dims as far as any window reads."""
    lead = [(0, 0)] * (x.ndim - w.rank)
    widths = [(w.pads_begin[d], w.overhang(d)) for d in range(w.rank)]
    if not any(a or b for a, b in widths):
        return x
    return np.pad(x, lead + widths, constant_values=value)


def taps(xp: np.ndarray, w: Window) -> Iterator[np.ndarray]:
    """For each kernel offset (row-major), the view of padded `xp` that offset reads for every
    output position: shape (..., *out_size). References sum or max over these, one vectorized
    operation per tap, in the same order the lowered kernels accumulate."""
    for offs in itertools.product(*(range(k) for k in w.kernel)):
        sl = tuple(
            slice(
                k * w.dilations[d],
                k * w.dilations[d] + (w.out_size[d] - 1) * w.strides[d] + 1,
                w.strides[d],
            )
            for d, k in enumerate(offs)
        )
        yield xp[(..., *sl)]


def windows(xp: np.ndarray, w: Window) -> np.ndarray:
    """Strided view (..., *out_size, *kernel) of padded `xp`: every window, without copying."""
    spans = tuple(w.span(d) for d in range(w.rank))
    axes = tuple(range(xp.ndim - w.rank, xp.ndim))
    v = np.lib.stride_tricks.sliding_window_view(xp, spans, axis=axes)
    out_sl = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(w.out_size, w.strides))
    k_sl = tuple(slice(None, None, d) for d in w.dilations)
    return v[(..., *out_sl, *k_sl)]


# ---- loop-IR side -------------------------------------------------------------------------------


def _as_int(e: Expr | int) -> int | None:
    if isinstance(e, int):
        return e
    if isinstance(e, L.Const) and not isinstance(e.value, bool):
        return int(e.value)
    return None


def out_range(w: Window, d: int, k: Expr | int) -> tuple[Expr | int, Expr | int]:
    """[lo, hi) of outputs along dim `d` whose kernel tap `k` reads a real input element.

    An output o reads input o*s + k*dil - pad_begin, so lo = ceil((pad_begin - k*dil) / s)
    clipped at 0 and hi = floor((in - 1 + pad_begin - k*dil) / s) + 1 clipped at out. Where the
    whole dim is in range for every tap, the bounds are the constants 0 and out, so unpadded
    kernels get plain loops.
    """
    s, dil, pb = w.strides[d], w.dilations[d], w.pads_begin[d]
    n_in, n_out = w.in_size[d], w.out_size[d]
    ki = _as_int(k)
    kd: Expr | int = ki * dil if ki is not None else L.mul(k, dil)
    if pb == 0:
        lo: Expr | int = 0
    elif ki is not None:
        lo = max(0, -(-(pb - ki * dil) // s))
    else:
        # ceil((pb - kd) / s) == (pb + s - 1 - kd) / s in C whenever it is positive (C division
        # truncates toward zero); when it is not, the max with 0 is right either way.
        lo = L.maximum(0, L.div(L.sub(pb + s - 1, kd), s))
    # The rightmost tap of the last output still reads inside the input: no clipping needed.
    if (n_out - 1) * s + (w.kernel[d] - 1) * dil - pb <= n_in - 1:
        hi: Expr | int = n_out
    elif ki is not None:
        hi = max(0, min(n_out, (n_in - 1 + pb - ki * dil) // s + 1))
    else:
        # floor(a/s) + 1 == (a + s) / s in C whenever that is positive; when not, hi <= 0 <= lo.
        hi = L.minimum(n_out, L.div(L.sub(n_in - 1 + pb + s, kd), s))
    return lo, hi


def range_loop(
    var: L.Var, lo: Expr | int, hi: Expr | int, body: L.Stmt, kind: str = "serial"
) -> L.Stmt:
    """`for var in [lo, hi)`; an empty range renders as a loop that does not run."""
    lo_e, hi_e = L.const(lo), L.const(hi)
    return L.For(var, lo_e, L.sub(hi_e, lo_e), body, kind)


def tap_count(w: Window, d: int, o: Expr, lo_bound: int, hi_bound: int) -> tuple[Expr | int, bool]:
    """How many taps of output `o`'s window along `d` fall in [lo_bound, hi_bound) (avg_pool's
    divisor factor); returns (count, is_constant). Dilation 1 (avg_pool has none)."""
    s, pb, k = w.strides[d], w.pads_begin[d], w.kernel[d]
    clip_lo = -pb < lo_bound
    clip_hi = (w.out_size[d] - 1) * s - pb + k > hi_bound
    if not clip_lo and not clip_hi:
        return k, True
    start = L.sub(L.mul(o, s), pb)
    end: Expr = L.add(start, k)
    first = L.maximum(start, lo_bound) if clip_lo else start
    last = L.minimum(end, hi_bound) if clip_hi else end
    return L.sub(last, first), False


TapBody = Callable[[list[Expr], list[tuple[Expr | int, Expr | int]]], L.Stmt]


def in_strides(w: Window) -> list[int]:
    """Row-major element strides of the spatial input dims."""
    return [math.prod(w.in_size[i + 1 :]) for i in range(w.rank)]


def tap_loops(w: Window, body_fn: TapBody) -> L.Stmt:
    """`for k0, k1, ...` over kernel taps (dims of extent 1 get the constant 0 and no loop),
    binding each dim's valid output range right after its tap loop; `body_fn(taps, bounds)`
    builds the per-tap statement, typically around `out_loops(w, bounds, ...)`."""
    ks: list[Expr] = [L.Var(f"k{i}") if w.kernel[i] > 1 else L.Const(0) for i in range(w.rank)]
    raw = [out_range(w, i, ks[i]) for i in range(w.rank)]
    bounds: list[tuple[Expr | int, Expr | int]] = [
        (
            lo if isinstance(lo, int) else L.Var(f"lo{i}"),
            hi if isinstance(hi, int) else L.Var(f"hi{i}"),
        )
        for i, (lo, hi) in enumerate(raw)
    ]
    body = body_fn(ks, bounds)
    for i in reversed(range(w.rank)):
        lo, hi = raw[i]
        if not isinstance(hi, int):
            body = L.Let(L.Var(f"hi{i}"), hi, body)
        if not isinstance(lo, int):
            body = L.Let(L.Var(f"lo{i}"), lo, body)
        k = ks[i]
        if isinstance(k, L.Var):
            body = L.For(k, L.Const(0), L.Const(w.kernel[i]), body)
    return body


def tap_offset(w: Window, ks: Sequence[Expr]) -> Expr:
    """Flat input offset of tap `ks` relative to output position 0 (may be negative: padding)."""
    out: Expr = L.Const(0)
    for k, dil, pb, st in zip(ks, w.dilations, w.pads_begin, in_strides(w)):
        out = L.add(out, L.mul(L.sub(L.mul(k, dil), pb), st))
    return out


def out_loops(
    w: Window,
    bounds: Sequence[tuple[Expr | int, Expr | int]],
    body_fn: Callable[[list[Expr], Expr, Expr], L.Stmt],
    inner_kind: str = "serial",
) -> L.Stmt:
    """`for o0 in [lo0, hi0): for o1 ...` over the outputs a tap reads real input for.
    `body_fn(os, out_offset, in_offset)` gets the output position, its flat output offset and
    the flat input offset it reads relative to the tap offset (`tap_offset`)."""
    os_ = [L.Var(f"o{i}") for i in range(w.rank)]
    in_off: Expr = L.Const(0)
    for o, s, st in zip(os_, w.strides, in_strides(w)):
        in_off = L.add(in_off, L.mul(o, s * st))
    body = body_fn(list(os_), L.flat_index(os_, w.out_size), in_off)
    for i in reversed(range(w.rank)):
        kind = inner_kind if i == w.rank - 1 and w.out_size[i] > 1 else "serial"
        body = range_loop(os_[i], bounds[i][0], bounds[i][1], body, kind)
    return body


# ---- channels-last (NHWC) ------------------------------------------------------------------------

LAYOUTS = ("nchw", "nhwc")


def layout_of(a: Mapping[str, object], op: str) -> str:
    """The `layout` attribute of a windowed op ("nchw" when absent: it is an OMITTED default,
    so graphs written before it existed print unchanged)."""
    layout = str(a.get("layout", "nchw"))
    if layout not in LAYOUTS:
        raise ShapeError(f"{op}: layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    return layout


def to_last(rank: int) -> tuple[int, ...]:
    """Permutation NC... -> N...C (NCHW -> NHWC for rank 4)."""
    return (0, *range(2, rank), 1)


def to_first(rank: int) -> tuple[int, ...]:
    """Permutation N...C -> NC... (NHWC -> NCHW for rank 4), the inverse of `to_last`."""
    return (0, rank - 1, *range(1, rank - 1))


def pixel_taps(
    w: Window, os_: Sequence[Expr], body_fn: Callable[[list[Expr], Expr], L.Stmt]
) -> L.Stmt:
    """`for k0: [if in range] for k1: [if in range] ... body_fn(taps, in_pixel)` for the output
    pixel `os_` of a channels-last kernel, `in_pixel` being the flat spatial index of the input
    pixel the tap reads. The range checks sit outside the channel loop `body_fn` builds (and at
    the outermost tap loop they can: a padded row is skipped whole), and only dims that can
    read padding get one."""
    ks: list[Expr] = [L.Var(f"k{i}") if w.kernel[i] > 1 else L.Const(0) for i in range(w.rank)]
    coords = [
        L.add(L.mul(o, s), L.sub(L.mul(k, dil), pb))
        for o, k, s, dil, pb in zip(os_, ks, w.strides, w.dilations, w.pads_begin)
    ]
    body = body_fn(ks, L.flat_index(coords, w.in_size))
    for i in reversed(range(w.rank)):
        if w.pads_begin[i] or w.overhang(i):
            body = L.If(L.land(L.ge(coords[i], 0), L.lt(coords[i], w.in_size[i])), body)
        k = ks[i]
        if isinstance(k, L.Var):
            body = L.For(k, L.Const(0), L.Const(w.kernel[i]), body)
    return body


PixelBody = Callable[[Expr, list[Expr], Expr], L.Stmt]


def pixel_loops(
    n: int, w: Window, parallel: str, work: int, body_fn: PixelBody, name: str = "nq"
) -> L.Stmt:
    """The outer nest of a channels-last kernel: one parallel loop over (image, first output
    dim) rows, serial loops over the other output dims; `body_fn(n, os_, pixel)` builds the
    statement for one output pixel (`pixel`: its flat index over N and the output dims, so
    `pixel * channels` is its first element). Annotated with its work like `channel_loop`."""
    o0 = w.out_size[0]
    nq = L.Var(name)
    n_e: Expr = L.Const(0) if n == 1 else L.div(nq, o0)
    first: Expr = nq if n == 1 else L.mod(nq, o0)
    rest = [L.Var(f"o{i}") for i in range(1, w.rank)]
    pixel = L.add(L.mul(nq, math.prod(w.out_size[1:])), L.flat_index(rest, w.out_size[1:]))
    body = body_fn(n_e, [first, *rest], pixel)
    for i in reversed(range(1, w.rank)):
        body = L.For(rest[i - 1], L.Const(0), L.Const(w.out_size[i]), body)
    kind = parallel if n * o0 > 1 else "serial"
    return L.For(nq, L.Const(0), L.Const(n * o0), body, kind, (("work", int(work)),))
