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

Three options refine the weights, each in its own file, in this order:

1. `smoothquant=ALPHA` (quant_smooth.py) rewrites the float graph first (matmul inputs divided
   by per-channel factors, weights multiplied), and the graph is traced again, so activation
   ranges are those of the smoothed values;
2. `bias_correction` (quant_bias.py) gives bias-less layers a zero bias, then adds to each bias
   the mean output shift (W - Wq) E[x] once the integer weights are chosen;
3. `rounding=gptq` (quant_gptq.py) chooses the integer weights by GPTQ instead of
   round-to-nearest, from the layer's input statistics on the calibration samples.

Inputs statistics for 2 and 3 are of the float graph's layer inputs (quant_layers.py), not of
the partly quantized network's.
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
from modelc.ir.graph import Graph, Node, Value
from modelc.ir.interpreter import run_graph
from modelc.passes import quant_calibrate as C
from modelc.passes.fold_qdq import TRANSPARENT
from modelc.passes.quant_bias import add_zero_biases, bias_shift
from modelc.passes.quant_edit import GraphEdit
from modelc.passes.quant_gptq import gptq_rows
from modelc.passes.quant_layers import (
    Layer,
    LayerInputs,
    collect_inputs,
    find_layers,
    from_rows,
    row_scales,
    weight_rows,
)
from modelc.passes.quant_smooth import smooth
from modelc.passes.registry import Pass, PassContext, register_pass

ACT_BITS = 8
SQNR_SAMPLES = 4  # keep the report cheap: SQNR on the first few calibration samples
ROUNDINGS = ("nearest", "gptq")


@dataclass(frozen=True)
class QuantConfig:
    """The knobs of post-training quantization; the `quantize` pass's options, and a JSON
    document (`to_json` / `from_json`) so a tuned configuration can be reused later."""

    method: str = "minmax"  # minmax | moving_average | percentile | kl | mse
    samples: int = 0  # calibrate on the first N samples (0 = all)
    # of activations: symmetric | asymmetric | symmetric_uint8 (weights: symmetric)
    scheme: str = "asymmetric"
    power_of_two: bool = False  # round every scale up to a power of two
    per_channel: bool = True  # weight scales per output channel (else per tensor)
    weight_bits: int = 8  # 8 or 4
    layer_bits: str = ""  # per-layer weight bits: "conv1:4,fc:8" (node loc or output name)
    fallback: str = ""  # layers left float: "conv1,conv5" (node loc or output name)
    percentile: float = 99.99  # for method=percentile
    averaging_constant: float = 0.01  # for method=moving_average
    bias_correction: bool = False  # add (W - Wq) E[x] to each bias (quant_bias.py)
    rounding: str = "nearest"  # of weights: nearest | gptq (quant_gptq.py)
    smoothquant: float = 0.0  # SmoothQuant migration strength alpha; 0 = off (quant_smooth.py)

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
        if not isinstance(self.bias_correction, bool):
            raise ValueError(f"bias_correction must be true or false, got {self.bias_correction!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        alpha = self.smoothquant
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
            raise ValueError(
                f"smoothquant (the migration strength alpha) must be in [0, 1] (0 = off, "
                f"typical 0.5), got {self.smoothquant!r}"
            )

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


@register_pass
@dataclass(frozen=True)
class Quantize(QuantConfig, Pass):
    name = "quantize"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        feeds = calibration_feeds(graph, ctx.calibration, self.samples)
        layers = self._layers(graph)
        if not layers:
            return graph
        # float rewrites first, so that ranges are calibrated on what gets quantized
        smoothed: dict[str, dict[str, Any]] = {}
        if self.smoothquant > 0:
            traces = [run_graph(graph, f, trace=True) for f in feeds]
            samples = [{**f, **t} for f, t in zip(feeds, traces)]
            graph, smoothed = smooth(graph, layers, samples, self.smoothquant)
            layers = self._layers(graph)
        if self.bias_correction:
            graph = add_zero_biases(graph, layers)
            layers = self._layers(graph)
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
        inputs: dict[str, LayerInputs] = {}
        if self.rounding == "gptq" or self.bias_correction:
            for lay in layers:
                xs = (t[lay.x] if lay.x in t else f[lay.x] for t, f in zip(traces, feeds))
                w_shape = graph.constant_map[lay.w].data.shape
                inputs[lay.out] = collect_inputs(
                    lay.node, w_shape, xs, second_moment=self.rounding == "gptq"
                )
        rw = _Rewrite(graph, layers, groups, params, self, inputs)
        out = rw.run()
        ref = [{lay.out: t[lay.out] for lay in layers} for t in traces[:SQNR_SAMPLES]]
        notes = {name: {"smoothquant": info} for name, info in smoothed.items()}
        for name, shift in rw.shifts.items():
            notes.setdefault(name, {})["bias_shift_max"] = shift
        rows = _report_rows(out, feeds[:SQNR_SAMPLES], ref, layers, groups, ranges, rw, notes)
        ctx.report(
            self.name,
            config=json.loads(self.config().to_json()),
            layers=rows,
            quantized=len(layers),
            fallback=list(self.fallback_names()),
        )
        return out

    # ---- finding layers ----------------------------------------------------------------------

    def _layers(self, graph: Graph) -> list[Layer]:
        found = find_layers(graph)
        known = set().union(*(lay.names for lay in found)) if found else set()
        asked = set(self.fallback_names()) | set(self.layer_bit_map())
        unknown = sorted(asked - known)
        if unknown:
            listing = ", ".join(sorted(lay.name for lay in found))
            raise PipelineError(
                f"quantize: fallback / layer_bits name no conv or matmul layer: {unknown}; "
                f"the quantizable layers (node locs; output names work too) are: {listing}"
            )
        skip = set(self.fallback_names())
        return [lay for lay in found if not (lay.names & skip)]

    def bits_for(self, layer: Layer) -> int:
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
            return C.percentile_range(values, self.percentile, self.scheme != "asymmetric")
        if self.method == "kl":
            return C.kl_range(values, ACT_BITS, lo, hi)
        return C.mse_range(values, ACT_BITS, lo, hi, self.scheme, self.power_of_two)


def _report_rows(
    graph: Graph,
    feeds: list[dict[str, np.ndarray]],
    ref: list[dict[str, np.ndarray]],
    layers: list[Layer],
    groups: dict[str, str],
    ranges: dict[str, tuple[float, float]],
    rw: _Rewrite,
    notes: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Per layer: what was chosen, and the SQNR of its output in the QDQ graph against the
    float graph on the first few calibration samples."""
    got = [run_graph(graph, f, trace=True) for f in feeds]
    rows = {}
    for lay in layers:
        r = ranges[groups[lay.out]]
        a = np.concatenate([g[lay.out].ravel() for g in got])
        b = np.concatenate([f[lay.out].ravel() for f in ref])
        scales = rw.wscales[lay.name]
        rows[lay.name] = {
            "op": lay.node.op,
            "output": lay.out,
            "weight_bits": rw.cfg.bits_for(lay),
            "weight_scale": [min(scales), max(scales)],  # one per tensor or channel
            "weight_channels": len(scales),
            "activation_range": [r[0], r[1]],
            "sqnr_db": round(C.sqnr_db(b, a), 2),
            **notes.get(lay.name, {}),
        }
    return rows


def _activation_groups(graph: Graph, layers: list[Layer]) -> dict[str, str]:
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
        layers: list[Layer],
        groups: dict[str, str],
        params: dict[str, tuple[float, int]],
        cfg: Quantize,
        inputs: Mapping[str, LayerInputs],
    ) -> None:
        self.g, self.layers, self.groups, self.params, self.cfg = graph, layers, groups, params, cfg
        self.inputs = inputs
        self.e = GraphEdit(graph)
        self.wscales: dict[str, list[float]] = {}
        self.shifts: dict[str, float] = {}  # layer -> max |bias correction|

    def _qdq(self, src: str, out: str, group: str, loc: str) -> list[Node]:
        """Q(src) -> DQ named `out`, with the parameters of `group`."""
        scale, zp = self.params[group]
        a = {"scale": [scale], "zero_point": [zp], "axis": None}
        e = self.e
        e.types[src] = e.types.get(src) or self.g.types[out]
        q = e.node("quantize", [src], {**a, "to": D.i8}, e.fresh(f"{out}.q"), loc)
        dq = e.node("dequantize", [q.output.name], {**a, "to": D.f32}, out, loc)
        return [q, dq]

    def _integer_weights(
        self, lay: Layer, w: np.ndarray, scales: list[float], bits: int
    ) -> np.ndarray:
        """The integer weights: nearest levels, or GPTQ's Hessian-aware choice."""
        if self.cfg.rounding == "gptq":
            stats = self.inputs[lay.out]
            rs = row_scales(lay.node, scales, w.shape[lay.axis])
            rows = [
                gptq_rows(r, stats.hessian(g), rs[g], bits)
                for g, r in enumerate(weight_rows(lay.node, w))
            ]
            return from_rows(lay.node, w.shape, rows).astype(np.int8)
        shape = [1] * w.ndim
        shape[lay.axis] = -1
        s = np.asarray(scales, np.float32).reshape(shape if len(scales) > 1 else ())
        qmax = 2 ** (bits - 1) - 1
        return np.clip(np.rint(w / s), -qmax - 1, qmax).astype(np.int8)

    def _weights(self, lay: Layer) -> tuple[list[Node], dict[str, str]]:
        """DQ(int weight) and DQ(int32 bias) nodes, and the inputs they replace."""
        w = self.e.constants[lay.w].data
        bits = self.cfg.bits_for(lay)
        dt = D.i8 if bits == 8 else D.i4
        scales = C.weight_scales(w, bits, self.cfg.per_channel, lay.axis, self.cfg.power_of_two)
        self.wscales[lay.name] = scales
        wq = self._integer_weights(lay, w, scales, bits)
        axis = lay.axis if len(scales) > 1 else None
        loc = lay.node.loc
        wname = self.e.const(f"{lay.w}.int{bits}", wq, dt)
        attrs = {"scale": scales, "zero_point": [0] * len(scales), "axis": axis, "to": D.f32}
        dq_w = self.e.node("dequantize", [wname], attrs, self.e.fresh(f"{lay.w}.dq"), loc)
        nodes, subs = [dq_w], {lay.w: dq_w.output.name}
        if lay.bias is not None:
            sx = self.params[self.groups[lay.x]][0]
            bscales = [sx * sw for sw in scales]
            b = self.e.constants[lay.bias].data.astype(np.float64)
            if self.cfg.bias_correction:
                shape = [1] * w.ndim
                shape[lay.axis] = -1
                s = np.asarray(scales, np.float64).reshape(shape if len(scales) > 1 else ())
                shift = bias_shift(w, wq * s, lay, self.inputs[lay.out])
                b = b + shift
                self.shifts[lay.name] = float(np.abs(shift).max()) if shift.size else 0.0
            bq = np.rint(b / np.asarray(bscales if len(bscales) > 1 else bscales * len(b)))
            bq = np.clip(bq, -(2**31), 2**31 - 1).astype(np.int32)
            bname = self.e.const(f"{lay.bias}.int32", bq, D.i32)
            attrs = {
                "scale": bscales,
                "zero_point": [0] * len(bscales),
                "axis": None if axis is None else 0,
            }
            attrs["to"] = D.f32
            dq_b = self.e.node("dequantize", [bname], attrs, self.e.fresh(f"{lay.bias}.dq"), loc)
            nodes.append(dq_b)
            subs[lay.bias] = dq_b.output.name
        return nodes, subs

    def run(self) -> Graph:
        g = self.g
        rename: dict[str, str] = {}  # graph input -> its DQ'd value
        nodes: list[Node] = []
        for v in g.inputs:
            if v.name in self.groups:
                rename[v.name] = self.e.fresh(f"{v.name}.dq")
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
                    f = self.e.fresh(f"{o.name}.float")
                    outs.append(Value(f, o.type))
                    post += self._qdq(f, o.name, self.groups[o.name], n.loc)
                else:
                    outs.append(o)
            nodes.append(dataclasses.replace(n, inputs=ins, outputs=tuple(outs)))
            nodes += post
        used = {i for n in nodes for i in n.inputs}
        consts = tuple(c for name, c in self.e.constants.items() if name in used)
        return g.replace(nodes=tuple(nodes), constants=consts)


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
