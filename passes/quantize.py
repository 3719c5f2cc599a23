"""quantize: post-training quantization of conv / matmul layers from calibration data.

The pass writes the quantized network in QDQ form and leaves the integer rewrite to `fold-qdq`,
so there is one place that knows how a quantized layer becomes qconv / qmatmul + requantize
(shared with imported QDQ models). For every conv and matmul with a constant weight it puts

    x -> quantize -> dequantize -> conv(., DQ(w_int), DQ(b_int32)) [-> relu | clip] -> Q -> DQ

around the layer: int8 activations with calibrated parameters, int8 or int4 symmetric weights
(per output channel or per tensor), int32 biases with scale s_x * s_w. Values between a layer's
input and the nearest non-moving op (max_pool, reshape, transpose) share one set of parameters,
so those ops run on integers too. Everything else (residual adds, pooling averages) is float
between dequantize and quantize: correct, just not integer.

Calibration data is not IR: it comes in the `PassContext` (`ctx.calibration`, one array per graph
input, samples along axis 0). Ranges come from the reference interpreter's trace of the float
graph on the first `samples` samples (quant_calibrate.py has the formulas). The pass reports per
layer the weight bits, scales, activation range and the SQNR of the layer's output in the QDQ
graph against the float graph on (up to) `SQNR_SAMPLES` calibration samples.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelc.errors import InputError, PipelineError
from modelc.ir import dtypes as D
from modelc.ir.attrs import Attrs
from modelc.ir.graph import Constant, Graph, Node, Value, make_constant
from modelc.ir.interpreter import run_graph
from modelc.ir.opdef import get_op
from modelc.ir.types import TensorType
from modelc.passes import quant_calibrate as C
from modelc.passes.fold_qdq import TRANSPARENT
from modelc.passes.registry import Pass, PassContext, register_pass

ACT_BITS = 8
SQNR_SAMPLES = 4  # keep the report cheap: SQNR on the first few calibration samples


@dataclass(frozen=True)
class QuantConfig:
    """The knobs of post-training quantization; the `quantize` pass's options, and a JSON
    document (`to_json` / `from_json`) so a tuned configuration can be reused later."""

    method: str = "minmax"  # minmax | moving_average | percentile | kl | mse
    samples: int = 0  # calibrate on the first N samples (0 = all)
    scheme: str = "asymmetric"  # of activations: symmetric | asymmetric (weights: symmetric)
    power_of_two: bool = False  # round every scale up to a power of two
    per_channel: bool = True  # weight scales per output channel (else per tensor)
    weight_bits: int = 8  # 8 or 4
    layer_bits: str = ""  # per-layer weight bits: "conv1:4,fc:8" (node loc or output name)
    fallback: str = ""  # layers left float: "conv1,conv5" (node loc or output name)
    percentile: float = 99.99  # for method=percentile
    averaging_constant: float = 0.01  # for method=moving_average

    def __post_init__(self) -> None:
        if self.method not in C.METHODS:
            raise ValueError(f"method must be one of {C.METHODS}, got {self.method!r}")
        if self.scheme not in C.SCHEMES:
            raise ValueError(f"scheme must be one of {C.SCHEMES}, got {self.scheme!r}")
        if self.samples < 0:
            raise ValueError(f"samples must be >= 0, got {self.samples}")
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")
        if not 0.0 < self.averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {self.averaging_constant}")
        for bits in [self.weight_bits, *self.layer_bit_map().values()]:
            if bits not in (4, 8):
                raise ValueError(f"weight bits must be 4 or 8, got {bits}")

    def fallback_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.fallback.split(",") if n.strip())

    def layer_bit_map(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in filter(None, (s.strip() for s in self.layer_bits.split(","))):
            name, sep, bits = item.rpartition(":")
            if not sep or not name or not bits.strip().isdigit():
                raise ValueError(f"layer_bits item {item!r} is not NAME:BITS")
            out[name.strip()] = int(bits)
        return out

    def to_json(self) -> str:
        """JSON with `fallback` as a list and `layer_bits` as an object."""
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["fallback"] = list(self.fallback_names())
        d["layer_bits"] = self.layer_bit_map()
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, src: str | Path | Mapping[str, Any]) -> QuantConfig:
        """From a dict, a JSON text, or the path of a JSON file (unknown keys are errors)."""
        if isinstance(src, Mapping):
            d = dict(src)
        else:
            text = str(src)
            if not text.lstrip().startswith("{"):
                try:
                    text = Path(text).read_text()
                except OSError as e:
                    raise InputError(f"quant config {src}: cannot read it ({e})") from None
            d = json.loads(text)
        names = {f.name for f in dataclasses.fields(QuantConfig)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"quant config: unknown keys {unknown} (known: {sorted(names)})")
        if isinstance(d.get("fallback"), (list, tuple)):
            d["fallback"] = ",".join(d["fallback"])
        if isinstance(d.get("layer_bits"), Mapping):
            d["layer_bits"] = ",".join(f"{k}:{v}" for k, v in d["layer_bits"].items())
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise InputError(f"quant config: {e}") from None

    def config(self) -> QuantConfig:
        """The plain configuration (the pass's options without the pass)."""
        return QuantConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class _Layer:
    node: Node  # the conv or matmul
    x: str  # activation input
    w: str  # constant weight
    bias: str | None  # constant float bias
    bias_reader: Node | None  # the node reading the bias (conv itself, or matmul's add)
    out: str  # the value quantized after the layer (after a fused relu / clip)
    axis: int  # weight channel axis
    names: frozenset[str]  # what fallback / layer_bits may call it


@register_pass
@dataclass(frozen=True)
class Quantize(QuantConfig, Pass):
    name = "quantize"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        feeds = calibration_feeds(graph, ctx.calibration, self.samples)
        layers = self._layers(graph)
        if not layers:
            return graph
        groups = _activation_groups(graph, layers)
        roots = sorted(set(groups.values()))
        traces = [run_graph(graph, f, trace=True) for f in feeds]
        params: dict[str, tuple[float, int]] = {}
        ranges: dict[str, tuple[float, float]] = {}
        for r in roots:
            batches = [
                np.asarray(t[r] if r in t else f[r], np.float32) for t, f in zip(traces, feeds)
            ]
            ranges[r] = self._range(batches)
            params[r] = C.qparams(*ranges[r], ACT_BITS, self.scheme, self.power_of_two)
        out, wscales = _Rewrite(graph, layers, groups, params, self).run()
        ref = [{lay.out: t[lay.out] for lay in layers} for t in traces[:SQNR_SAMPLES]]
        self._report(ctx, out, feeds[:SQNR_SAMPLES], ref, layers, groups, ranges, wscales)
        return out

    # ---- finding layers ----------------------------------------------------------------------

    def _layers(self, graph: Graph) -> list[_Layer]:
        consts = graph.constant_map
        found: list[_Layer] = []
        for n in graph.nodes:
            layer = _match(graph, n, consts)
            if layer is not None:
                found.append(layer)
        known = set().union(*(lay.names for lay in found)) if found else set()
        asked = set(self.fallback_names()) | set(self.layer_bit_map())
        unknown = sorted(asked - known)
        if unknown:
            listing = ", ".join(sorted(lay.node.loc or lay.node.output.name for lay in found))
            raise PipelineError(
                f"quantize: fallback / layer_bits name no conv or matmul layer: {unknown}; "
                f"the quantizable layers (node locs; output names work too) are: {listing}"
            )
        skip = set(self.fallback_names())
        return [lay for lay in found if not (lay.names & skip)]

    def bits_for(self, layer: _Layer) -> int:
        """Weight bits of `layer`: its `layer_bits` entry, else `weight_bits`."""
        for name, bits in self.layer_bit_map().items():
            if name in layer.names:
                return bits
        return self.weight_bits

    # ---- calibration -------------------------------------------------------------------------

    def _range(self, batches: list[np.ndarray]) -> tuple[float, float]:
        if self.method == "moving_average":
            return C.moving_average_range(batches, self.averaging_constant)
        lo, hi = C.minmax_range(batches)
        if self.method == "minmax":
            return lo, hi
        values = np.concatenate([b.ravel() for b in batches])
        if self.method == "percentile":
            return C.percentile_range(values, self.percentile, self.scheme == "symmetric")
        if self.method == "kl":
            return C.kl_range(values, ACT_BITS, lo, hi)
        return C.mse_range(values, ACT_BITS, lo, hi, self.scheme, self.power_of_two)

    def _report(
        self,
        ctx: PassContext,
        graph: Graph,
        feeds: list[dict[str, np.ndarray]],
        ref: list[dict[str, np.ndarray]],
        layers: list[_Layer],
        groups: dict[str, str],
        ranges: dict[str, tuple[float, float]],
        wscales: dict[str, list[float]],
    ) -> None:
        got = [run_graph(graph, f, trace=True) for f in feeds]
        rows = {}
        for lay in layers:
            r = ranges[groups[lay.out]]
            a = np.concatenate([g[lay.out].ravel() for g in got])
            b = np.concatenate([f[lay.out].ravel() for f in ref])
            scales = wscales[lay.node.loc or lay.node.output.name]
            rows[lay.node.loc or lay.node.output.name] = {
                "weight_bits": self.bits_for(lay),
                "weight_scale": [min(scales), max(scales)],  # one per tensor or channel
                "weight_channels": len(scales),
                "activation_range": [r[0], r[1]],
                "sqnr_db": round(C.sqnr_db(b, a), 2),
            }
        ctx.report(
            self.name,
            config=json.loads(self.config().to_json()),
            layers=rows,
            quantized=len(layers),
            fallback=list(self.fallback_names()),
        )


def _match(graph: Graph, n: Node, consts: Mapping[str, Constant]) -> _Layer | None:
    """A conv (NCHW) or 2-D-weight matmul with a constant float weight and a run-time input."""
    users = graph.users
    if n.op == "conv":
        if n.attrs.get("layout", "nchw") != "nchw":
            return None
        axis = 0
    elif n.op != "matmul":
        return None
    else:
        axis = 1
    x, w = n.inputs[0], n.inputs[1]
    if x in consts or w not in consts or consts[w].data.dtype != np.float32:
        return None
    if n.op == "matmul" and consts[w].data.ndim != 2:
        return None
    bias, reader, out = None, None, n.output.name
    if n.op == "conv" and len(n.inputs) > 2 and n.inputs[2]:
        bias, reader = n.inputs[2], n
        if bias not in consts:
            return None
    names = {n.loc, n.output.name}
    nxt = users.get(out, ())
    if n.op == "matmul" and len(nxt) == 1 and nxt[0].op == "add" and out not in graph.outputs:
        add = nxt[0]
        other = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
        c = consts.get(other)
        if c is not None and c.data.shape == (consts[w].data.shape[1],):
            bias, reader, out = other, add, add.output.name
            names |= {add.loc, out}
            nxt = users.get(out, ())
    if len(nxt) == 1 and nxt[0].op in ("relu", "clip") and out not in graph.outputs:
        out = nxt[0].output.name
        names.add(out)
    return _Layer(n, x, w, bias, reader, out, axis, frozenset(names - {""}))


def _activation_groups(graph: Graph, layers: list[_Layer]) -> dict[str, str]:
    """value -> the value whose range it takes: values reached from a layer input back through
    max_pool / reshape / transpose share their source's parameters (those ops then stay
    integer in fold-qdq)."""
    groups: dict[str, str] = {}
    for lay in layers:
        groups[lay.out] = lay.out
    for lay in layers:
        chain = [lay.x]
        p = graph.producers.get(lay.x)
        while p is not None and p.op in TRANSPARENT and p.inputs[0] not in graph.constant_map:
            chain.append(p.inputs[0])
            p = graph.producers.get(p.inputs[0])
        root = groups.get(chain[-1], chain[-1])
        for v in chain:
            groups.setdefault(v, root)
    return groups


class _Rewrite:
    """The QDQ graph: Q / DQ pairs after every grouped value, quantized weights and biases."""

    def __init__(
        self,
        graph: Graph,
        layers: list[_Layer],
        groups: dict[str, str],
        params: dict[str, tuple[float, int]],
        cfg: Quantize,
    ) -> None:
        self.g, self.layers, self.groups, self.params, self.cfg = graph, layers, groups, params, cfg
        self.taken = set(graph.types)
        self.constants: dict[str, Constant] = dict(graph.constant_map)
        self.types: dict[str, TensorType] = dict(graph.types)
        self.wscales: dict[str, list[float]] = {}

    def _fresh(self, hint: str) -> str:
        name, k = hint, 0
        while name in self.taken:
            k += 1
            name = f"{hint}_{k}"
        self.taken.add(name)
        return name

    def _node(self, op: str, inputs: list[str], attrs: dict[str, Any], out: str, loc: str) -> Node:
        opdef = get_op(op)
        a = opdef.check_attrs(Attrs(attrs), loc=loc)
        (t,) = opdef.infer_types([self.types[i] for i in inputs], a, loc=loc)
        self.types[out] = t
        return Node(op, tuple(inputs), (Value(out, t),), a, loc)

    def _const(self, hint: str, data: np.ndarray, dtype: D.DType) -> str:
        name = self._fresh(hint)
        t = TensorType(data.shape, dtype)
        self.constants[name] = make_constant(name, data, t)
        self.types[name] = t
        return name

    def _qdq(self, src: str, out: str, group: str, loc: str) -> list[Node]:
        """Q(src) -> DQ named `out`, with the parameters of `group`."""
        scale, zp = self.params[group]
        a = {"scale": [scale], "zero_point": [zp], "axis": None}
        self.types[src] = self.types.get(src) or self.g.types[out]
        q = self._node("quantize", [src], {**a, "to": D.i8}, self._fresh(f"{out}.q"), loc)
        dq = self._node("dequantize", [q.output.name], {**a, "to": D.f32}, out, loc)
        return [q, dq]

    def _weights(self, lay: _Layer) -> tuple[list[Node], dict[str, str]]:
        """DQ(int weight) and DQ(int32 bias) nodes, and the inputs they replace."""
        w = self.constants[lay.w].data
        bits = self.cfg.bits_for(lay)
        dt = D.i8 if bits == 8 else D.i4
        scales = C.weight_scales(w, bits, self.cfg.per_channel, lay.axis, self.cfg.power_of_two)
        self.wscales[lay.node.loc or lay.node.output.name] = scales
        shape = [1] * w.ndim
        shape[lay.axis] = -1
        s = np.asarray(scales, np.float32).reshape(shape if len(scales) > 1 else ())
        qmax = 2 ** (bits - 1) - 1
        wq = np.clip(np.rint(w / s), -qmax - 1, qmax).astype(np.int8)
        axis = lay.axis if len(scales) > 1 else None
        loc = lay.node.loc
        wname = self._const(f"{lay.w}.int{bits}", wq, dt)
        attrs = {"scale": scales, "zero_point": [0] * len(scales), "axis": axis, "to": D.f32}
        dq_w = self._node("dequantize", [wname], attrs, self._fresh(f"{lay.w}.dq"), loc)
        nodes, subs = [dq_w], {lay.w: dq_w.output.name}
        if lay.bias is not None:
            sx = self.params[self.groups[lay.x]][0]
            bscales = [sx * sw for sw in scales]
            b = self.constants[lay.bias].data.astype(np.float64)
            bq = np.rint(b / np.asarray(bscales if len(bscales) > 1 else bscales * len(b)))
            bq = np.clip(bq, -(2**31), 2**31 - 1).astype(np.int32)
            bname = self._const(f"{lay.bias}.int32", bq, D.i32)
            attrs = {
                "scale": bscales,
                "zero_point": [0] * len(bscales),
                "axis": None if axis is None else 0,
            }
            attrs["to"] = D.f32
            dq_b = self._node("dequantize", [bname], attrs, self._fresh(f"{lay.bias}.dq"), loc)
            nodes.append(dq_b)
            subs[lay.bias] = dq_b.output.name
        return nodes, subs

    def run(self) -> tuple[Graph, dict[str, list[float]]]:
        g = self.g
        rename: dict[str, str] = {}  # graph input -> its DQ'd value
        nodes: list[Node] = []
        for v in g.inputs:
            if v.name in self.groups:
                rename[v.name] = self._fresh(f"{v.name}.dq")
                nodes += self._qdq(v.name, rename[v.name], self.groups[v.name], "")
        before: dict[int, list[Node]] = {}  # id(layer node) -> its weight / bias DQs
        subs: dict[int, dict[str, str]] = {}  # id(node) -> float constant -> its DQ
        for lay in self.layers:
            new, s = self._weights(lay)
            before[id(lay.node)] = new
            subs.setdefault(id(lay.node), {})[lay.w] = s[lay.w]
            if lay.bias is not None:
                subs.setdefault(id(lay.bias_reader), {})[lay.bias] = s[lay.bias]
        for n in g.nodes:
            nodes += before.get(id(n), [])
            mine = subs.get(id(n), {})
            ins = tuple(mine.get(i, rename.get(i, i)) for i in n.inputs)
            outs, post = [], []
            for o in n.outputs:
                if o.name in self.groups:  # the float value gets a new name, the DQ the old
                    f = self._fresh(f"{o.name}.float")
                    outs.append(Value(f, o.type))
                    post += self._qdq(f, o.name, self.groups[o.name], n.loc)
                else:
                    outs.append(o)
            nodes.append(dataclasses.replace(n, inputs=ins, outputs=tuple(outs)))
            nodes += post
        used = {i for n in nodes for i in n.inputs}
        consts = tuple(c for name, c in self.constants.items() if name in used)
        return g.replace(nodes=tuple(nodes), constants=consts), self.wscales


def calibration_feeds(
    graph: Graph, calibration: Mapping[str, np.ndarray] | None, samples: int
) -> list[dict[str, np.ndarray]]:
    """Split calibration arrays into per-run feeds. An array for input `x` of shape S holds
    samples along axis 0: shape (N, *S) (one feed per row), or (N * S[0], *S[1:]) (consecutive
    batches of S[0] rows)."""
    if calibration is None:
        raise PipelineError(
            "quantize needs calibration data: pass calibration={input name: samples} (or an .npz "
            "path) to modelc.compile, or --calibration calib.npz to `modelc compile`"
        )
    names = [v.name for v in graph.inputs]
    missing = [n for n in names if n not in calibration]
    if missing:
        raise InputError(
            f"calibration data has no samples for model inputs {missing} (it has "
            f"{sorted(calibration)}); give one array per input name, samples along axis 0"
        )
    split: dict[str, list[np.ndarray]] = {}
    for v in graph.inputs:
        arr = np.asarray(calibration[v.name])
        shape = tuple(v.type.shape)
        if arr.shape[1:] == shape and arr.shape[0] > 0:
            rows = list(arr)
        elif shape and arr.ndim == len(shape) and arr.shape[1:] == shape[1:] and shape[0] > 0:
            b = shape[0]
            if arr.shape[0] == 0 or arr.shape[0] % b:
                raise InputError(
                    f"calibration input {v.name!r}: {arr.shape[0]} rows are not a multiple of "
                    f"the batch size {b} of input shape {shape}"
                )
            rows = [arr[i : i + b] for i in range(0, arr.shape[0], b)]
        else:
            raise InputError(
                f"calibration input {v.name!r}: samples of shape {arr.shape} do not fit the "
                f"model input shape {shape}; give (N, *{shape}) or (N * {shape[0] if shape else 1}"
                f", *{shape[1:]}) arrays"
            )
        split[v.name] = [np.ascontiguousarray(r, v.type.dtype.numpy) for r in rows]
    n = min(len(r) for r in split.values())
    if samples:
        n = min(n, samples)
    return [{k: r[i] for k, r in split.items()} for i in range(n)]
