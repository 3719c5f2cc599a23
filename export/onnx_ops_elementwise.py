"""Elementwise IR ops -> ONNX: math, arithmetic, comparison, logic, activations, clip, cast.

Most are table rows, the frontend's `onnx_ops/elementwise.py` tables read backwards: (IR op,
ONNX op) for ops without attributes, (IR op, ONNX op, attributes copied verbatim) for the
activations with some. IR binary ops broadcast like numpy, as ONNX's do from opset 7. The rest
are short functions where ONNX spells the op differently:

- clip: bounds are attributes in the IR, optional scalar inputs in ONNX (an infinite bound is
  left out);
- silu has no ONNX op: x * sigmoid(x);
- mod with fmod=False on floats (Python's remainder) has no ONNX op either (ONNX Mod wants
  fmod=1 for floats): C's fmod, plus the divisor when the signs differ, as numpy computes it.
"""

from __future__ import annotations

import math

from modelc.export.onnx_export import ExporterFn, NodeExport, exporter, register_exporter

# (IR op, ONNX op): same inputs, one output, no attributes.
DIRECT = [
    ("relu", "Relu"),
    ("sigmoid", "Sigmoid"),
    ("tanh", "Tanh"),
    ("exp", "Exp"),
    ("log", "Log"),
    ("sqrt", "Sqrt"),
    ("neg", "Neg"),
    ("abs", "Abs"),
    ("reciprocal", "Reciprocal"),
    ("floor", "Floor"),
    ("ceil", "Ceil"),
    ("erf", "Erf"),
    ("round", "Round"),
    ("sin", "Sin"),
    ("cos", "Cos"),
    ("softplus", "Softplus"),
    ("hard_swish", "HardSwish"),
    ("not", "Not"),
    ("copy", "Identity"),
    ("add", "Add"),
    ("sub", "Sub"),
    ("mul", "Mul"),
    ("div", "Div"),
    ("pow", "Pow"),
    ("max", "Max"),
    ("min", "Min"),
    ("equal", "Equal"),
    ("less", "Less"),
    ("greater", "Greater"),
    ("less_equal", "LessOrEqual"),
    ("greater_equal", "GreaterOrEqual"),
    ("and", "And"),
    ("or", "Or"),
    ("xor", "Xor"),
    ("where", "Where"),
]

# (IR op, ONNX op, attributes): the IR attributes have the ONNX names and meanings.
WITH_ATTRS = [
    ("leaky_relu", "LeakyRelu", ("alpha",)),
    ("elu", "Elu", ("alpha",)),
    ("hard_sigmoid", "HardSigmoid", ("alpha", "beta")),
    ("gelu", "Gelu", ("approximate",)),
]


def _direct(onnx_op: str, names: tuple[str, ...] = ()) -> ExporterFn:
    def export(e: NodeExport) -> None:
        e.emit_out(onnx_op, e.inputs, **{k: e.attrs[k] for k in names if k in e.attrs})

    return export


for _ir, _onnx in DIRECT:
    register_exporter(_ir, _direct(_onnx))
for _ir, _onnx, _names in WITH_ATTRS:
    register_exporter(_ir, _direct(_onnx, _names))


@exporter("clip")
def clip(e: NodeExport) -> None:
    dt = e.in_type(0).dtype
    bounds = [float(e.attrs["min"]), float(e.attrs["max"])]
    names = [e.scalar(v, dt) if math.isfinite(v) else "" for v in bounds]
    while names and not names[-1]:
        names.pop()
    e.emit_out("Clip", [e.inputs[0], *names])


@exporter("cast")
def cast(e: NodeExport) -> None:
    e.emit_out("Cast", e.inputs, to=e.attrs["to"])


@exporter("silu")
def silu(e: NodeExport) -> None:
    (s,) = e.emit("Sigmoid", e.inputs)
    e.emit_out("Mul", [e.inputs[0], s])


@exporter("mod")
def mod(e: NodeExport) -> None:
    fmod = bool(e.attrs["fmod"])
    if fmod or not e.in_type(0).dtype.is_float:
        e.emit_out("Mod", e.inputs, fmod=int(fmod))
        return
    x, y = e.inputs
    dt = e.in_type(0).dtype
    (r,) = e.emit("Mod", [x, y], fmod=1)
    zero = e.scalar(0, dt)
    (nonzero,) = e.emit("Not", e.emit("Equal", [r, zero]))
    (r_neg,) = e.emit("Less", [r, zero])
    (y_neg,) = e.emit("Less", [y, zero])
    (differ,) = e.emit("Xor", [r_neg, y_neg])
    (fix,) = e.emit("And", [nonzero, differ])
    (shifted,) = e.emit("Add", [r, y])
    e.emit_out("Where", [fix, shifted, r])
