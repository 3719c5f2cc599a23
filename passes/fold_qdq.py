"""fold-qdq: turn QDQ-quantized float islands into integer ops.

A QDQ model (onnxruntime's `quantize_static(..., quant_format=QDQ)`, PyTorch / TensorRT
exporters) stores a quantized network as float ops between DequantizeLinear and QuantizeLinear
nodes. This pass rewrites, at every `quantize` (Q) node, the pattern that feeds it:

    Q(conv(DQ(x), DQ(w), DQ(bias)?) [-> relu | clip])
        -> requantize(qconv(x, w, bias)) {min / max carry the activation}
    Q(matmul(DQ(a), DQ(b) | transpose(DQ(b))) [+ DQ(bias)] [-> relu | clip])
        -> requantize(qmatmul(a, b, bias))
    Q(op(DQ(x))) with equal in / out parameters, op in max_pool / reshape / transpose / relu
        -> op(x) on the integers (relu becomes max(x, zero point))
    Q(concat(DQ(x0), DQ(x1), ...)) with equal parameters everywhere -> concat(x0, x1, ...)

Weights and biases must be constants (their integer values get `QuantParams` types); inputs
and outputs per tensor, weights per tensor or per output channel, the int32 bias quantized with
scale x_scale * w_scale (as quantizers make it). The rewritten integer value keeps the Q node's
name, so the next pattern finds it. Anything else (a float op between DQ and Q that has no
integer form here, e.g. add or reduce_mean) stays `dequantize -> float op -> quantize`: correct,
just not integer. Matched float nodes and dequantizes nobody reads any more are removed.

The requantize multipliers are TFLite fixed point (`quant_math.requantize_constants`), shared
with the ONNX frontend's QLinearConv / QLinearMatMul, so both spellings of a quantized layer
become the same IR.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from modelc.ir import dtypes as D
from modelc.ir.attrs import Attrs
from modelc.ir.graph import Constant, Graph, Node, Value, fresh_name, make_constant
from modelc.ir.opdef import get_op
from modelc.ir.ops.quant import QUANT_DTYPES, quant_params
from modelc.ir.ops.quant_math import (
    NUMPY,
    ROUNDINGS,
    compact,
    int_range,
    quantize_formula,
    requantize_constants,
)
from modelc.ir.types import QuantParams, TensorType
from modelc.passes.registry import Pass, PassContext, register_pass

# A DQ'd int32 bias is used as is when its scale is within this relative distance of
# x_scale * w_scale (quantizers compute that product in float32); otherwise nothing is folded.
BIAS_SCALE_RTOL = 1e-6
TRANSPARENT = ("max_pool", "reshape", "transpose")


@register_pass
@dataclass(frozen=True)
class FoldQDQ(Pass):
    name = "fold-qdq"
    # requantize rounding: "single" (TFLite single rounding; bit-exact with onnxruntime's
    # integer layers, the default) or "double" (gemmlowp / CMSIS-NN default)
    # (TFLITE_SINGLE_ROUNDING; agrees with onnxruntime's float requantization far more often).
    rounding: str = "single"

    def __post_init__(self) -> None:
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        rw = _Rewriter(graph, self.rounding)
        out = rw.run()
        if rw.counts:
            ctx.report(self.name, **rw.counts)
        return out


@dataclass(frozen=True)
class _Q:
    """The quantize node a rewrite ends at."""

    node: Node
    dtype: D.DType
    scale: float
    zero_point: int


class _Rewriter:
    def __init__(self, graph: Graph, rounding: str) -> None:
        self.g = graph
        self.rounding = rounding
        self.constants: dict[str, Constant] = dict(graph.constant_map)
        self.taken = set(graph.types)
        self.replaced: dict[int, list[Node]] = {}  # id(Q node) -> its replacement
        self.candidates: set[int] = set()  # ids of nodes the rewrites may have orphaned
        self.counts: dict[str, int] = {}
        self.types: dict[str, TensorType] = {}  # of the values rewrites make

    # ---- driver ------------------------------------------------------------------------------

    def run(self) -> Graph:
        rules: dict[str, Callable[[_Q, Node], list[Node] | None]] = {
            "conv": self._compute,
            "matmul": self._compute,
            "add": self._compute,
            "relu": self._activation,
            "clip": self._activation,
            "concat": self._concat,
            "dequantize": self._requantize_dq,
            **{op: self._transparent for op in TRANSPARENT},
        }
        for node in self.g.nodes:
            q = self._as_q(node)
            p = self.g.producers.get(node.inputs[0]) if q else None
            rule = rules.get(p.op) if p is not None else None
            if q is None or p is None or rule is None or not self._single_use(p.output.name):
                continue
            new = rule(q, p)
            if new:
                self.replaced[id(node)] = new
                self.candidates.add(id(p))
        if not self.replaced:
            return self.g
        nodes: list[Node] = []
        for node in self.g.nodes:
            nodes.extend(self.replaced.get(id(node), [node]))
        return self._sweep(nodes)

    def _sweep(self, nodes: list[Node]) -> Graph:
        """Drop the matched float nodes (and the dequantizes feeding them) nobody reads now,
        then constants nobody reads."""
        while True:
            used = {i for n in nodes for i in n.inputs} | set(self.g.outputs)
            dead = [
                n
                for n in nodes
                if id(n) in self.candidates and not any(o.name in used for o in n.outputs)
            ]
            if not dead:
                break
            gone = {id(n) for n in dead}
            for n in dead:
                for i in n.inputs:
                    p = self.g.producers.get(i)
                    if p is not None:
                        self.candidates.add(id(p))
            nodes = [n for n in nodes if id(n) not in gone]
        used = {i for n in nodes for i in n.inputs} | set(self.g.outputs)
        consts = tuple(c for name, c in self.constants.items() if name in used)
        return self.g.replace(nodes=tuple(nodes), constants=consts)

    # ---- matching helpers --------------------------------------------------------------------

    def _as_q(self, node: Node) -> _Q | None:
        a = node.attrs
        if node.op != "quantize" or a["axis"] is not None:
            return None
        return _Q(node, a["to"], float(a["scale"][0]), int(a["zero_point"][0]))

    def _single_use(self, name: str) -> bool:
        return len(self.g.users.get(name, ())) == 1 and name not in self.g.outputs

    def _dq(self, name: str) -> Node | None:
        p = self.g.producers.get(name)
        return p if p is not None and p.op == "dequantize" and p.attrs["to"] == D.f32 else None

    def _dq_tensor(self, name: str) -> tuple[str, float, int] | None:
        """`name` = dequantize(q) per tensor, q's type agreeing: (q, scale, zero point)."""
        dq = self._dq(name)
        if dq is None or dq.attrs["axis"] is not None:
            return None
        q = dq.inputs[0]
        t = self.g.types[q]
        scale, zp = float(dq.attrs["scale"][0]), int(dq.attrs["zero_point"][0])
        if t.dtype not in QUANT_DTYPES:
            return None
        if t.quant is not None and (t.quant.scale, t.quant.zero_point) != ((scale,), (zp,)):
            return None
        return q, scale, zp

    def _dq_const(self, name: str) -> tuple[Node, np.ndarray] | None:
        dq = self._dq(name)
        if dq is None or dq.inputs[0] not in self.constants:
            return None
        return dq, self.constants[dq.inputs[0]].data

    def _same_params(self, q: _Q, src: tuple[str, float, int] | None) -> bool:
        return (
            src is not None
            and self.g.types[src[0]].dtype == q.dtype
            and (src[1], src[2]) == (q.scale, q.zero_point)
        )

    # ---- building ----------------------------------------------------------------------------

    def _fresh(self, hint: str) -> str:
        return fresh_name(hint, self.taken)

    def _constant(
        self,
        hint: str,
        data: np.ndarray,
        quant: QuantParams | None = None,
        dtype: D.DType | None = None,
    ) -> str:
        """A new constant; `dtype` where numpy cannot tell (4-bit types)."""
        name = self._fresh(hint)
        t = TensorType(data.shape, dtype or D.from_numpy(data.dtype), quant)
        self.constants[name] = make_constant(name, data, t)
        return name

    def _weight(self, dq: Node, data: np.ndarray) -> str:
        """The integer constant under a dequantize, its type given the DQ's parameters."""
        name = dq.inputs[0]
        old = self.constants[name]
        dt = old.value.type.dtype
        t = TensorType(data.shape, dt, quant_params(dq.attrs, dt))
        if old.value.type.quant not in (None, t.quant):
            return self._constant(f"{name}.q", np.asarray(data), t.quant, dt)
        self.constants[name] = Constant(Value(name, t), old.data)
        return name

    def _node(self, op: str, inputs: Sequence[str], attrs: dict, out: str, loc: str) -> Node:
        opdef = get_op(op)
        a = opdef.check_attrs(Attrs(attrs), loc=loc)
        types = [self._type(i) for i in inputs]
        (t,) = opdef.infer_types(types, a, loc=loc)
        self.taken.add(out)
        self.types[out] = t
        return Node(op, tuple(inputs), (Value(out, t),), a, loc)

    def _type(self, name: str) -> TensorType:
        c = self.constants.get(name)
        if c is not None:
            return c.value.type
        return self.types.get(name) or self.g.types[name]

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # ---- rules -------------------------------------------------------------------------------

    def _activation(self, q: _Q, act: Node) -> list[Node] | None:
        """relu / clip between a compute op and Q: a clamp of the requantized value."""
        src = self.g.producers.get(act.inputs[0])
        if src is None or not self._single_use(act.inputs[0]):
            return self._transparent(q, act) if act.op == "relu" else None
        lo, hi = int_range(q.dtype)
        bounds = (0.0, math.inf) if act.op == "relu" else (act.attrs["min"], act.attrs["max"])
        with np.errstate(over="ignore"):  # an infinite bound saturates
            qb = [
                int(
                    quantize_formula(
                        NUMPY, np.float32(b), np.float32(q.scale), q.zero_point, lo, hi
                    )
                )
                for b in (max(bounds[0], -3e38), min(bounds[1], 3e38))
            ]
        new = self._compute(q, src, (max(lo, qb[0]), min(hi, qb[1])))
        if new:
            self.candidates.add(id(src))
        return new if new else (self._transparent(q, act) if act.op == "relu" else None)

    def _compute(self, q: _Q, p: Node, clamp: tuple[int, int] | None = None) -> list[Node] | None:
        bias_dq: str | None = None
        if p.op == "add":
            p, bias_dq = self._matmul_bias(p)  # type: ignore[assignment]
            if p is None:
                return None
        if p.op == "conv":  # qconv is NCHW only: a channels-last conv stays float
            nchw = p.attrs.get("layout", "nchw") == "nchw"
            return self._conv(q, p, clamp) if nchw else None
        if p.op == "matmul":
            return self._matmul(q, p, bias_dq, clamp)
        return None

    def _matmul_bias(self, add: Node) -> tuple[Node | None, str | None]:
        for k in (0, 1):
            mm = self.g.producers.get(add.inputs[k])
            if mm is not None and mm.op == "matmul" and self._single_use(add.inputs[k]):
                self.candidates.add(id(mm))
                return mm, add.inputs[1 - k]
        return None, None

    def _bias(self, name: str | None, acc_scales: Sequence[float], n: int) -> str | None | bool:
        """The int32 constant under a DQ'd bias of `n` channels, or None (no bias) / False
        (a bias this pass cannot use exactly)."""
        if not name:
            return None
        m = self._dq_const(name)
        if m is None or m[1].dtype != np.int32 or m[1].shape != (n,):
            return False
        dq, data = m
        scales = list(dq.attrs["scale"]) * (n if dq.attrs["axis"] is None else 1)
        want = list(acc_scales) * (n if len(acc_scales) == 1 else 1)
        if any(z != 0 for z in dq.attrs["zero_point"]) or len(scales) != len(want):
            return False
        if any(abs(s - w) > BIAS_SCALE_RTOL * w for s, w in zip(scales, want)):
            return False
        return self._weight(dq, data)

    def _requantize(
        self,
        q: _Q,
        acc: Node,
        reals: Sequence[float],
        axis: int,
        clamp: tuple[int, int] | None,
    ) -> list[Node]:
        out = q.node.output.name
        rank = acc.output.type.rank
        mult, shift = requantize_constants(reals, rank, axis)
        m = self._constant(f"{out}.multiplier", mult)
        s = self._constant(f"{out}.shift", shift)
        lo, hi = clamp if clamp is not None else int_range(q.dtype)
        attrs = {"zero_point": q.zero_point, "to": q.dtype, "scale": q.scale}
        attrs["rounding"] = self.rounding
        if lo != int_range(q.dtype)[0]:
            attrs["min"] = lo
        if hi != int_range(q.dtype)[1]:
            attrs["max"] = hi
        req = self._node("requantize", [acc.output.name, m, s], attrs, out, q.node.loc)
        return [acc, req]

    def _conv(self, q: _Q, conv: Node, clamp: tuple[int, int] | None) -> list[Node] | None:
        x = self._dq_tensor(conv.inputs[0])
        w = self._dq_const(conv.inputs[1])
        if x is None or w is None:
            return None
        w_dq, w_data = w
        m = w_data.shape[0]
        if w_dq.attrs["axis"] not in (None, 0) or self._type(w_dq.inputs[0]).dtype not in (
            QUANT_DTYPES
        ):
            return None
        w_scales = list(w_dq.attrs["scale"])
        acc_scales = [x[1] * s for s in w_scales]
        bias = self._bias(conv.inputs[2] if len(conv.inputs) > 2 else None, acc_scales, m)
        if bias is False:
            return None
        wq = self._weight(w_dq, w_data)
        attrs = {
            **dict(conv.attrs),
            "x_zero_point": x[2],
            "w_zero_point": compact(w_dq.attrs["zero_point"]),
        }
        ins = [x[0], wq] + ([bias] if isinstance(bias, str) else [])
        acc = self._node("qconv", ins, attrs, self._fresh(f"{q.node.output.name}.acc"), conv.loc)
        self._count("qconv")
        return self._requantize(q, acc, [a / q.scale for a in acc_scales], 1, clamp)

    def _matmul(
        self, q: _Q, mm: Node, bias_dq: str | None, clamp: tuple[int, int] | None
    ) -> list[Node] | None:
        a = self._dq_tensor(mm.inputs[0])
        b = self._weight_operand(mm.inputs[1])
        if a is None or b is None:
            return None
        b_dq, b_data, axis, transposed = b
        if b_data.ndim < 2 or axis not in (None, b_data.ndim - 1):
            return None
        n = b_data.shape[-1]
        b_scales = list(b_dq.attrs["scale"])
        acc_scales = [a[1] * s for s in b_scales]
        bias = self._bias(bias_dq, acc_scales, n)
        if bias is False:
            return None
        bq = self._b_constant(b_dq, b_data, axis) if transposed else self._weight(b_dq, b_data)
        attrs = {"a_zero_point": a[2], "b_zero_point": compact(b_dq.attrs["zero_point"])}
        ins = [a[0], bq] + ([bias] if isinstance(bias, str) else [])
        acc = self._node("qmatmul", ins, attrs, self._fresh(f"{q.node.output.name}.acc"), mm.loc)
        self._count("qmatmul")
        rank = acc.output.type.rank
        return self._requantize(q, acc, [s / q.scale for s in acc_scales], rank - 1, clamp)

    def _weight_operand(self, name: str) -> tuple[Node, np.ndarray, int | None, bool] | None:
        """b = DQ(const) or transpose(DQ(const)) (Gemm's transB): (DQ, b's integer data as the
        matmul sees it, b's channel axis or None, whether it was transposed)."""
        p = self.g.producers.get(name)
        perm: tuple[int, ...] | None = None
        if p is not None and p.op == "transpose" and self._single_use(name):
            perm = tuple(p.attrs["perm"])
            self.candidates.add(id(p))
            name = p.inputs[0]
        m = self._dq_const(name)
        if m is None:
            return None
        dq, data = m
        axis = dq.attrs["axis"]
        if perm is None:
            return dq, data, axis, False
        data = np.ascontiguousarray(np.transpose(data, perm))
        return dq, data, None if axis is None else perm.index(axis), True

    def _b_constant(self, dq: Node, data: np.ndarray, axis: int | None) -> str:
        """A transposed weight: a new constant with the channel axis moved along."""
        dt = self.constants[dq.inputs[0]].value.type.dtype
        q = replace(quant_params(dq.attrs, dt), axis=axis)
        return self._constant(f"{dq.inputs[0]}.T", data, q, dt)

    def _transparent(self, q: _Q, op: Node) -> list[Node] | None:
        """An op that commutes with (de)quantization at equal parameters: it moves or selects
        integers, or (relu) clamps them at the zero point."""
        src = self._dq_tensor(op.inputs[0])
        if not self._same_params(q, src):
            return None
        assert src is not None
        out = q.node.output.name
        if op.op == "relu":
            zp_data = np.asarray(q.zero_point, q.dtype.numpy)
            zp = self._constant(f"{out}.zero_point", zp_data, dtype=q.dtype)
            new = self._node("max", [src[0], zp], {}, out, op.loc)
        else:
            new = self._node(op.op, [src[0], *op.inputs[1:]], dict(op.attrs), out, op.loc)
        self._count(op.op)
        return [self._with_quant(new, q)]

    def _concat(self, q: _Q, cat: Node) -> list[Node] | None:
        """Concat of dequantized inputs: inputs quantized like the output are used as they are,
        the others are rescaled to the output's parameters first (as a QLinearConcat)."""
        srcs = [self._dq_tensor(i) for i in cat.inputs]
        if any(s is None for s in srcs):
            return None
        new: list[Node] = []
        ins = []
        for s in srcs:
            assert s is not None
            if self._same_params(q, s):
                ins.append(s[0])
            else:
                new.append(self._rescale(q, s, self._fresh(f"{s[0]}.rescaled"), cat.loc))
                ins.append(new[-1].output.name)
        want = q.node.output.type.quant
        if any(self._type(i).quant not in (None, want) for i in ins):
            return None
        out = self._node("concat", ins, dict(cat.attrs), q.node.output.name, cat.loc)
        self._count("concat")
        return new + [self._with_quant(out, q)]

    def _requantize_dq(self, q: _Q, dq: Node) -> list[Node] | None:
        """Q(DQ(x)) with other parameters: an integer rescale."""
        src = self._dq_tensor(dq.output.name)
        if src is None or self._same_params(q, src):
            return None
        self._count("rescale")
        return [self._rescale(q, src, q.node.output.name, q.node.loc)]

    def _rescale(self, q: _Q, src: tuple[str, float, int], out: str, loc: str) -> Node:
        """requantize of the integer tensor `src` (q, scale, zero point) to Q's parameters."""
        rank = self._type(src[0]).rank
        mult, shift = requantize_constants([src[1] / q.scale], rank, 0)
        m = self._constant(f"{out}.multiplier", mult)
        s = self._constant(f"{out}.shift", shift)
        attrs = {
            "zero_point": q.zero_point,
            "to": q.dtype,
            "scale": q.scale,
            "rounding": self.rounding,
            "input_zero_point": src[2],
        }
        return self._node("requantize", [src[0], m, s], attrs, out, loc)

    def _with_quant(self, node: Node, q: _Q) -> Node:
        """The Q's parameters on the output type (ops that only move integers do not infer
        them from the operand's type when the operand has none)."""
        t = replace(node.output.type, quant=q.node.output.type.quant)
        self.types[node.output.name] = t
        return replace(node, outputs=(Value(node.output.name, t),))
