"""pad: grow (or, with negative pads, crop) every dim, filling the border with a constant, the
mirrored interior (`reflect`) or the nearest edge element (`edge`). ONNX Pad semantics.

Negative pads crop first; the positive pads then extend what is left (this is what onnxruntime
does, and it matters for `reflect` / `edge`: they mirror about the cropped edge).

The lowering writes every output element exactly once, as boxes, and needs no per-element
index arithmetic beyond an affine offset:
- the interior is one affine copy of the kept input (contiguous rows);
- constant mode: the border of dim k is two slabs, before and after the interior along k,
  spanning the interior along the dims before k and everything along the dims after k; each
  slab is a fill;
- reflect / edge: along each padded dim the output splits into before / inside / after
  regions, and every combination of regions (but all-inside) is an affine copy: inside reads
  forward, a reflected region reads backward (coefficient -stride) and an edge region repeats
  one element (coefficient 0). That is 3^g - 1 boxes for g padded dims (8 for the usual H, W).
No load hides behind a select, so every renderer (C, CUDA, LLVM) may evaluate loads eagerly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelc.errors import ShapeError, UnsupportedOpError
from modelc.ir import loop as L
from modelc.ir.attrs import Attrs
from modelc.ir.dtypes import DType
from modelc.ir.loop import Kernel, Stmt
from modelc.ir.opdef import INJECTIVE, AttrSpec, LowerRequest, OpDef, register_op
from modelc.ir.ops.common import params_for, row_major_strides
from modelc.ir.ops.tensor_copy import AffineCopy, copy_stmt, fill_stmt, ints, result_type
from modelc.ir.types import TensorType

MODES = ("constant", "reflect", "edge")


@dataclass(frozen=True)
class _Dim:
    """One dim of a pad: `before`/`after` are the signed pads, `n` the input extent."""

    n: int
    before: int
    after: int

    @property
    def lo(self) -> int:
        """First input index kept after cropping."""
        return max(-self.before, 0)

    @property
    def kept(self) -> int:
        """Input elements left after cropping (the interior of the output)."""
        return self.n - max(-self.before, 0) - max(-self.after, 0)

    @property
    def start(self) -> int:
        """Output index where the interior begins."""
        return max(self.before, 0)

    @property
    def out(self) -> int:
        return self.n + self.before + self.after

    @property
    def grows(self) -> bool:
        return self.before > 0 or self.after > 0


def _dims(shape: Sequence[int], attrs: Attrs) -> list[_Dim]:
    """The pads per dim, checked against the shape and the mode."""
    pads = ints(attrs["pads"], "pad: pads")
    rank = len(shape)
    if len(pads) != 2 * rank:
        raise ShapeError(
            f"pad: pads {pads} must hold {2 * rank} entries (all begins, then all ends) for the "
            f"rank-{rank} input {tuple(shape)}"
        )
    mode = attrs["mode"]
    if mode not in MODES:
        raise UnsupportedOpError(f"pad: mode {mode!r} is not one of {', '.join(MODES)}")
    dims = [_Dim(int(n), pads[d], pads[d + rank]) for d, n in enumerate(shape)]
    for d, dim in enumerate(dims):
        if dim.kept < 0:
            raise ShapeError(
                f"pad: pads ({dim.before}, {dim.after}) crop more than the {dim.n} elements of "
                f"dim {d} of {tuple(shape)}"
            )
        if mode == "edge" and dim.grows and dim.kept == 0:
            raise ShapeError(f"pad: edge mode cannot pad dim {d}, which is empty after cropping")
        if mode == "reflect" and dim.grows and max(dim.before, dim.after) > dim.kept - 1:
            raise ShapeError(
                f"pad: reflect mode pads dim {d} by ({dim.before}, {dim.after}), but it has only "
                f"{dim.kept} elements after cropping; each pad must be at most {dim.kept - 1}"
            )
    return dims


def _fill_value(attrs: Attrs, dt: DType) -> int | float | bool:
    """`value` converted to the tensor's dtype the way numpy converts it (C-like truncation)."""
    v = attrs["value"]
    if dt.is_int and not math.isfinite(float(v)):
        raise ShapeError(f"pad: value {v} cannot be stored in a {dt} tensor")
    return np.asarray(v, np.float64).astype(dt.numpy).item()


def _infer(types: Sequence[TensorType | None], attrs: Attrs) -> list[TensorType]:
    t = types[0]
    assert t is not None
    dims = _dims(t.shape, attrs)
    _fill_value(attrs, t.dtype)
    shape = [d.out for d in dims]
    return [
        result_type(
            "pad", t, shape, lambda a: a if (dims[a].before, dims[a].after) == (0, 0) else None
        )
    ]


def _reference(xs: Sequence[np.ndarray | None], attrs: Attrs) -> list[np.ndarray]:
    x = xs[0]
    assert x is not None
    dims = _dims(x.shape, attrs)
    cropped = x[tuple(slice(d.lo, d.lo + d.kept) for d in dims)]
    if not dims:
        return [cropped.copy()]
    widths = [(max(d.before, 0), max(d.after, 0)) for d in dims]
    mode = attrs["mode"]
    if mode == "constant":
        value = np.asarray(attrs["value"], np.float64).astype(x.dtype)
        return [np.pad(cropped, widths, mode="constant", constant_values=value)]
    return [np.pad(cropped, widths, mode=mode)]


# ---- lowering ----------------------------------------------------------------------------------

Region = tuple[int, int, str]  # (first output index, extent, "before" | "inside" | "after")


def _regions(dim: _Dim) -> list[Region]:
    """The non-empty regions of one output dim."""
    after = dim.out - dim.start - dim.kept
    regions = [(0, dim.start, "before"), (dim.start, dim.kept, "inside")]
    regions.append((dim.start + dim.kept, after, "after"))
    return [r for r in regions if r[1] > 0]


def _source(dim: _Dim, region: str, mode: str) -> tuple[int, int]:
    """(input index read by the region's first element, step per output element)."""
    m = dim.kept - 1
    if region == "inside":
        return dim.lo, 1
    if mode == "edge":
        return (dim.lo if region == "before" else dim.lo + m), 0
    # reflect: output u positions past the interior's start reads lo - u before it and
    # lo + 2m - u after it (pads never exceed m, checked in _dims).
    return (dim.lo + dim.start if region == "before" else dim.lo + m - 1), -1


def _lower(req: LowerRequest) -> Kernel:
    t, out_t = req.in_types[0], req.out_types[0]
    attrs = req.node.attrs
    mode = attrs["mode"]
    dims = _dims(t.shape, attrs)
    in_strides = row_major_strides(t.shape)
    out_strides = row_major_strides(out_t.shape)

    def box_copy(box: Sequence[tuple[_Dim, Region]]) -> Stmt:
        src_base, src_coeffs = 0, []
        for (dim, (_, _, region)), stride in zip(box, in_strides):
            first, step = _source(dim, region, mode)
            src_base += first * stride
            src_coeffs.append(step * stride)
        copy = AffineCopy(
            tuple(n for _, (_, n, _) in box),
            tuple(src_coeffs),
            out_strides,
            src_base,
            sum(first * s for (_, (first, _, _)), s in zip(box, out_strides)),
        )
        return copy_stmt(copy, t.dtype, req.schedule)

    interior = [(d, (d.start, d.kept, "inside")) for d in dims]
    nests = [box_copy(interior)]
    if mode == "constant":
        fill = L.const(_fill_value(attrs, t.dtype), t.dtype)
        for k, dk in enumerate(dims):
            for side_start, width, side in _regions(dk):
                if side == "inside":
                    continue
                # dims before k: interior only; dim k: this side; dims after k: everything.
                box = [(d.start, d.kept) for d in dims[:k]] + [(side_start, width)]
                box += [(0, d.out) for d in dims[k + 1 :]]
                base = sum(lo * s for (lo, _), s in zip(box, out_strides))
                lens = [n for _, n in box]
                nests.append(fill_stmt(lens, out_strides, base, fill, req.schedule))
    else:
        for combo in itertools.product(*[_regions(d) for d in dims]):
            if all(region == "inside" for _, _, region in combo):
                continue
            nests.append(box_copy(list(zip(dims, combo))))
    return Kernel(req.kernel_name, params_for(req), L.Seq(tuple(nests)), (("op", "pad"),))


register_op(
    OpDef(
        name="pad",
        infer=_infer,
        reference=_reference,
        attrs={
            "pads": AttrSpec("ints", doc="all begins, then all ends; negative crops"),
            "mode": AttrSpec("str", "constant", doc="constant | reflect | edge"),
            "value": AttrSpec("float", 0.0, doc="fill of constant mode, cast to x's dtype"),
        },
        traits=frozenset({INJECTIVE}),
        lower=_lower,
        doc="ONNX Pad (constant / reflect / edge). Negative pads crop first, then positive pads "
        "grow what is left; reflect needs each pad <= kept - 1, edge a non-empty kept range.",
    )
)
