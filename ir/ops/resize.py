"""resize: linear (bi-/trilinear, N-d) and cubic interpolation, as ONNX Resize / onnxruntime do.

Nearest-neighbour resizing is not this op: the frontend turns it into constant-index gathers.

Attributes are a static normal form: `sizes` (the full output shape) and `scales` (one float32
scale per dim, the one the coordinate transform divides by: `size / in`, or what the model gave),
plus the modes. A dim whose size and scale are unchanged (scale exactly 1) is copied, as
onnxruntime does; every other dim is interpolated separably:

- each output index o maps to an input coordinate c by `coordinate_transformation_mode`
  (half_pixel, pytorch_half_pixel, align_corners, asymmetric, half_pixel_symmetric,
  tf_half_pixel_for_nn), computed in float32 in onnxruntime's operation order;
- linear: c is clamped to [0, in-1], taps floor(c) and floor(c)+1 (clamped) with weights
  1 - f and f (f = c - floor(c));
- cubic: taps floor(c)-1 .. floor(c)+2 with Keys' cubic convolution weights for coefficient
  `cubic_coeff_a`; taps outside the input read the edge element, or, with `exclude_outside`,
  get weight 0 and the remaining weights are renormalized to sum 1.

Values accumulate in float32 (float64 for f64 inputs). antialias and tf_crop_and_resize are not
part of the op. The reference applies one axis at a time (a gather of each tap and a weighted sum);
the lowering computes each axis' taps and weights inline at the loop level of that axis (no tables:
the kernel needs no extra buffers), and sums the product of the per-axis weights over all tap
combinations in the innermost loop.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelc.errors import ShapeError, UnsupportedOpError, UnsupportedTypeError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType, f32, f64, from_numpy
from modelc.ir.loop import Expr, Kernel, Stmt, Var
from modelc.ir.opdef import AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import params_for, row_major_strides
from modelc.ir.types import TensorType

OP = "resize"
F32 = np.float32
MODES = ("linear", "cubic")
COORDINATE_MODES = (
    "half_pixel",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "half_pixel_symmetric",
    "tf_half_pixel_for_nn",
)


def coordinate(
    mode: str, o: Any, in_len: int, out_len: int, scale: float, k: Callable[[float], Any]
) -> Any:
    """Input coordinate of output index `o` (a float32 numpy array or a loop-IR f32 expression);
    `k` makes a float32 constant of the same world. Constants are rounded to float32 first, and
    the operations run in onnxruntime's order, so both worlds compute the same float32 values."""
    s = F32(scale)
    half = k(0.5)
    if mode == "asymmetric":
        return o / k(s)
    if mode == "half_pixel":
        return (o + half) / k(s) - half
    if mode == "pytorch_half_pixel":
        return (o + half) / k(s) - half if out_len > 1 else o * k(0.0)
    if mode == "tf_half_pixel_for_nn":
        return (o + half) / k(s)
    if mode == "align_corners":
        if out_len == 1:
            return o * k(0.0)
        return o * k(F32(in_len - 1)) / k(F32(out_len - 1))
    if mode == "half_pixel_symmetric":
        adjustment = F32(out_len) / (s * F32(in_len))
        offset = F32(in_len) / F32(2) * (F32(1) - adjustment)
        return k(offset) + (o + half) / k(s) - half
    raise UnsupportedOpError(
        f"{OP}: coordinate_transformation_mode {mode!r} is not one of {', '.join(COORDINATE_MODES)}"
    )


def cubic_weights(s: Any, a: float, k: Callable[[float], Any]) -> list[Any]:
    """Keys' cubic convolution weights of the taps floor(c)-1 .. floor(c)+2 for the fraction
    s = c - floor(c) (onnxruntime's GetCubicCoeffs, term for term)."""
    one, two = k(1.0), k(2.0)
    av = k(a)
    s1, t, t1 = s + one, one - s, two - s
    outer = k(5 * F32(a)), k(8 * F32(a)), k(4 * F32(a))
    a2, a3 = k(F32(a) + 2), k(F32(a) + 3)
    return [
        ((av * s1 - outer[0]) * s1 + outer[1]) * s1 - outer[2],
        ((a2 * s - a3) * s) * s + one,
        ((a2 * t - a3) * t) * t + one,
        ((av * t1 - outer[0]) * t1 + outer[1]) * t1 - outer[2],
    ]


# ---- attributes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The checked attributes: which dims are interpolated, and how."""

    in_shape: tuple[int, ...]
    sizes: tuple[int, ...]
    scales: tuple[float, ...]
    mode: str
    coord: str
    cubic_a: float
    exclude: bool

    def resized(self, d: int) -> bool:
        return not (self.sizes[d] == self.in_shape[d] and self.scales[d] == 1.0)

    @property
    def taps(self) -> int:
        return 2 if self.mode == "linear" else 4


def plan(x: TensorType, a: Attrs) -> Plan:
    rank = x.rank
    sizes = tuple(int(v) for v in a["sizes"])
    scales = tuple(float(F32(v)) for v in a["scales"])
    if len(sizes) != rank or len(scales) != rank:
        raise ShapeError(
            f"{OP}: sizes {sizes} and scales {scales} need one entry per dim of {x.shape}"
        )
    if any(v < 1 for v in sizes) or any(not v > 0 for v in scales):
        raise ShapeError(f"{OP}: sizes {sizes} must be >= 1 and scales {scales} positive")
    if a["mode"] not in MODES:
        raise UnsupportedOpError(f"{OP}: mode {a['mode']!r} is not one of {', '.join(MODES)}")
    if a["coordinate_transformation_mode"] not in COORDINATE_MODES:
        raise UnsupportedOpError(
            f"{OP}: coordinate_transformation_mode {a['coordinate_transformation_mode']!r} is "
            f"not one of {', '.join(COORDINATE_MODES)}"
        )
    p = Plan(
        x.shape,
        sizes,
        scales,
        a["mode"],
        a["coordinate_transformation_mode"],
        float(a["cubic_coeff_a"]),
        bool(a["exclude_outside"]),
    )
    for d in range(rank):
        if p.resized(d) and x.shape[d] == 0:
            raise ShapeError(f"{OP}: cannot interpolate along dim {d} of {x.shape}, which is empty")
    return p


def _infer(types: Sequence[TensorType | None], a: Attrs) -> list[TensorType]:
    (x,) = types
    assert x is not None
    if not x.dtype.is_float:
        raise UnsupportedTypeError(
            f"{OP}: linear / cubic modes take float tensors, got {x.dtype} (cast to float first)"
        )
    return [TensorType(plan(x, a).sizes, x.dtype)]


def _acc(dt: DType) -> DType:
    return f64 if dt == f64 else f32


# ---- reference ---------------------------------------------------------------------------------


def axis_taps(p: Plan, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [out, T] int64, weights [out, T] float32) of dim `d`."""
    n, out = p.in_shape[d], p.sizes[d]
    o = np.arange(out, dtype=F32)
    with np.errstate(all="ignore"):
        c = np.asarray(coordinate(p.coord, o, n, out, p.scales[d], F32), dtype=F32)
        if p.mode == "linear":
            c = np.clip(c, F32(0), F32(n - 1))
            i0 = np.minimum(c.astype(np.int64), n - 1)
            frac = (c - i0.astype(F32)).astype(F32)
            idx = np.stack([i0, np.minimum(i0 + 1, n - 1)], axis=1)
            return idx, np.stack([F32(1) - frac, frac], axis=1)
        fl = np.floor(c)
        base = fl.astype(np.int64) - 1
        w = np.stack(cubic_weights((c - fl).astype(F32), p.cubic_a, F32), axis=1).astype(F32)
        raw = base[:, None] + np.arange(4)
        if p.exclude:
            w = np.where((raw >= 0) & (raw < n), w, F32(0))
            w = (w / w.sum(axis=1, keepdims=True, dtype=F32)).astype(F32)
        return np.clip(raw, 0, n - 1), w


def _reference(xs: Sequence[np.ndarray | None], a: Attrs) -> list[np.ndarray]:
    (x,) = xs
    assert x is not None
    p = plan(TensorType(x.shape, from_numpy(x.dtype)), a)
    acc = _acc(from_numpy(x.dtype)).numpy
    y = x.astype(acc)
    for d in range(x.ndim):
        if not p.resized(d):
            continue
        idx, w = axis_taps(p, d)
        shape = [1] * x.ndim
        shape[d] = p.sizes[d]
        out = np.zeros(y.shape[:d] + (p.sizes[d],) + y.shape[d + 1 :], dtype=acc)
        for t in range(p.taps):
            out += np.take(y, idx[:, t], axis=d) * w[:, t].astype(acc).reshape(shape)
        y = out
    return [y.astype(x.dtype)]


# ---- lowering ----------------------------------------------------------------------------------


def _ir_taps(p: Plan, d: int, o: Expr) -> tuple[list[tuple[Var, Expr]], list[Expr], list[Expr]]:
    """Loop-IR bindings for dim `d` at output index `o`: (lets in order, tap indices, weights)."""
    n, out = p.in_shape[d], p.sizes[d]

    def k(v: float) -> Expr:
        return L.Const(float(F32(v)), f32)

    c = Var(f"c{d}", f32)
    lets: list[tuple[Var, Expr]] = [
        (c, coordinate(p.coord, L.cast(f32, o), n, out, p.scales[d], k))
    ]
    if p.mode == "linear":
        cc, i0, fr = Var(f"cc{d}", f32), Var(f"i{d}"), Var(f"f{d}", f32)
        clamped = L.minimum(L.maximum(c, k(0.0)), k(F32(n - 1)))
        lets += [
            (cc, clamped),
            (i0, L.minimum(L.cast(L.INDEX, cc), n - 1)),
            (fr, cc - L.cast(f32, i0)),
        ]
        return lets, [i0, L.minimum(i0 + 1, n - 1)], [k(1.0) - fr, fr]
    fl, base, s = Var(f"fl{d}", f32), Var(f"b{d}"), Var(f"s{d}", f32)
    lets += [(fl, L.call("floor", c)), (base, L.cast(L.INDEX, fl) - 1), (s, c - fl)]
    weights: list[Expr] = []
    for t, expr in enumerate(cubic_weights(s, p.cubic_a, k)):
        w = Var(f"w{d}_{t}", f32)
        if p.exclude:
            inside = L.land(L.ge(base + t, 0), L.lt(base + t, n))
            expr = L.select(inside, expr, k(0.0))
        lets.append((w, expr))
        weights.append(w)
    if p.exclude:
        total = Var(f"sum{d}", f32)
        lets.append((total, weights[0] + weights[1] + weights[2] + weights[3]))
        normed = []
        for t, w in enumerate(weights):
            nw = Var(f"nw{d}_{t}", f32)
            lets.append((nw, w / total))
            normed.append(nw)
        weights = normed
    indices = [L.minimum(L.maximum(base + t, 0), n - 1) for t in range(4)]
    return lets, indices, weights


def _lower(req: LowerRequest) -> Kernel:
    x_t, out_t = req.in_types[0], req.out_types[0]
    p = plan(x_t, req.node.attrs)
    rank = x_t.rank
    acc = _acc(x_t.dtype)
    resized = [d for d in range(rank) if p.resized(d)]
    if not resized:  # nothing interpolated: a flat copy
        i = Var("i")
        body: Stmt = L.Store("out0", i, L.Load("in0", i, x_t.dtype))
        kind = "vectorized" if req.schedule.vectorize else "serial"
        nest = L.For(i, L.Const(0), L.Const(out_t.size), body, kind)
        return Kernel(req.kernel_name, params_for(req), nest, (("op", OP),))
    first = resized[0]
    in_strides = row_major_strides(x_t.shape)
    outer = math.prod(x_t.shape[:first])
    # Loop dims: one merged loop over the untouched leading dims, then dims first..rank-1.
    ovar = Var("outer")
    ovars = {d: Var(f"o{d}") for d in range(first, rank)}
    per_dim: dict[int, tuple[list[Expr], list[Expr]]] = {}
    lets: dict[int, list[tuple[Var, Expr]]] = {}
    for d in resized:
        bindings, idx, w = _ir_taps(p, d, ovars[d])
        lets[d], per_dim[d] = bindings, (idx, w)
    x_base: Expr = L.mul(ovar, math.prod(x_t.shape[first:])) if outer > 1 else L.Const(0)
    terms: list[Expr] = []
    for combo in itertools.product(*(range(p.taps) for _ in resized)):
        weight: Expr | None = None
        index = x_base
        for d in range(first, rank):
            if d in per_dim:
                t = combo[resized.index(d)]
                idx_e, w_e = per_dim[d][0][t], per_dim[d][1][t]
                weight = w_e if weight is None else L.mul(weight, w_e)
            else:
                idx_e = ovars[d]
            index = L.add(index, L.mul(idx_e, in_strides[d]))
        assert weight is not None
        terms.append(L.mul(L.cast(acc, weight), L.cast(acc, L.Load("in0", index, x_t.dtype))))
    value = terms[0]
    for term in terms[1:]:
        value = L.add(value, term)
    out_index = L.flat_index(
        [ovar, *(ovars[d] for d in range(first, rank))], (outer, *p.sizes[first:])
    )
    body = L.Store("out0", out_index, L.cast(out_t.dtype, value))
    for d in reversed(range(first, rank)):
        for var, expr in reversed(lets.get(d, [])):
            body = L.Let(var, expr, body)
        body = L.For(ovars[d], L.Const(0), L.Const(p.sizes[d]), body)
    work = out_t.size * len(terms)
    kind = "parallel" if req.schedule.parallel else "serial"
    if outer > 1:
        body = L.For(ovar, L.Const(0), L.Const(outer), body, kind, (("work", work),))
    elif isinstance(body, L.For):
        body = L.For(body.var, body.start, body.extent, body.body, kind, (("work", work),))
    return Kernel(req.kernel_name, params_for(req), body, (("op", OP),))


register_op(
    OpDef(
        name=OP,
        infer=_infer,
        reference=_reference,
        attrs={
            "mode": AttrSpec("str", doc="'linear' or 'cubic'"),
            "sizes": AttrSpec("ints", doc="the output shape (one entry per dim)"),
            "scales": AttrSpec("floats", doc="per-dim float32 scale the coordinates divide by"),
            "coordinate_transformation_mode": AttrSpec("str", "half_pixel"),
            "cubic_coeff_a": AttrSpec("float", -0.75),
            "exclude_outside": AttrSpec("bool", False),
        },
        lower=_lower,
        doc="ONNX Resize in linear or cubic mode (antialias off) with static sizes and scales; "
        "dims with size and scale unchanged are copied, the others interpolated separably.",
    )
)
