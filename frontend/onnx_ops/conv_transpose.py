"""ConvTranspose: resolves `auto_pad` / `output_shape` into the IR's static normal form.

The IR op `conv_transpose` takes explicit, non-negative pads and output_padding. ONNX also lets a
model ask for an output size (`output_shape`, or `auto_pad` SAME_* meaning `in * stride`); the
pads that give it are the total padding `natural - target` split between the two ends, the odd
unit going to the end for SAME_UPPER and to the beginning otherwise (ConvTranspose-11's text).
ConvTranspose-1's text says the opposite, but onnxruntime and the ONNX reference apply the
version-11 rule to every version, so modelc does too: one converter.

A target larger than the natural output gives a negative end pad, which is the same as extra
output_padding (positions only the bias reaches); a negative begin pad (a target larger by two or
more) is a ShapeError, as in onnxruntime.
"""

from __future__ import annotations

from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter


def _split(total: int, small_first: bool) -> tuple[int, int]:
    """(begin, end) of a total padding; floor division as the ONNX reference does."""
    if small_first:
        return total // 2, total - total // 2
    return total - total // 2, total // 2


@converter("ConvTranspose", since=1)
def conv_transpose(n: OnnxNode) -> list[str]:
    """kernel_shape comes from W; output_shape wins over pads (as the spec says)."""
    x_shape, w_shape = n.shape(0), n.shape(1)
    if len(x_shape) < 3 or len(w_shape) != len(x_shape):
        raise n.shape_error(f"X {x_shape} and W {w_shape} are not an N-d ConvTranspose's operands")
    kernel = list(w_shape[2:])
    k = len(kernel)
    given = n.ints_attr("kernel_shape")
    if given is not None and list(given) != kernel:
        raise n.shape_error(f"kernel_shape {given} disagrees with W's shape {w_shape}")
    strides = n.ints_attr("strides", [1] * k) or []
    dilations = n.ints_attr("dilations", [1] * k) or []
    extra = n.ints_attr("output_padding", [0] * k) or []
    for name, vals in (("strides", strides), ("dilations", dilations), ("output_padding", extra)):
        if len(vals) != k:
            raise n.shape_error(f"{name} {vals} should have {k} entries for {k} spatial dims")
    auto_pad = n.attr("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise n.unsupported(f"auto_pad {auto_pad!r} is not an ONNX auto_pad value")
    in_size = x_shape[2:]
    natural = [
        (i - 1) * s + (kk - 1) * d + 1 + e
        for i, s, kk, d, e in zip(in_size, strides, kernel, dilations, extra)
    ]
    target = n.ints_attr("output_shape")
    if target is not None:
        if len(target) != k:
            raise n.shape_error(f"output_shape {target} should have {k} entries (spatial dims)")
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = [i * s for i, s in zip(in_size, strides)]
    if target is None:
        pads = [0] * (2 * k) if auto_pad == "VALID" else n.ints_attr("pads", [0] * (2 * k)) or []
        if len(pads) != 2 * k:
            raise n.shape_error(f"pads {pads} should have {2 * k} entries")
    else:
        begins, ends = [], []
        for d in range(k):
            begin, end = _split(natural[d] - int(target[d]), auto_pad == "SAME_UPPER")
            if begin < 0:
                raise n.shape_error(
                    f"output_shape {list(target)} does not fit the input: it exceeds the natural "
                    f"output {natural} by more than one in spatial dim {d}, which would need a "
                    "negative begin pad (onnxruntime rejects it too)"
                )
            if end < 0:
                extra[d] -= end
                end = 0
            begins.append(begin)
            ends.append(end)
        pads = begins + ends
    y = n.op(
        "conv_transpose",
        n.input(0),
        n.input(1),
        n.input(2),
        strides=strides,
        pads=pads,
        dilations=dilations,
        group=n.attr("group", 1),
        output_padding=extra,
    )
    return [y]
