"""Per-layer quantization error: which layers a quantization configuration hurts most.

    rows = modelc.quant_error.quant_error("model.onnx", "calib.npz", {"weight_bits": 4})
    print(format_table(rows))
    modelc inspect model.onnx --quant-error --calibration calib.npz [--quant-config best.json]

It runs the graph-level part of the `cpu-int8` pipeline twice, with and without `quantize`, and
stops right after `quantize`: the network is then still in QDQ form, where every quantized
layer's output keeps its float graph's name (the dequantized value, which is what the next layer
reads). Both graphs run in the reference interpreter on the calibration samples, and each
layer's output is compared with the float one: SQNR, cosine similarity, largest absolute error.
The error is cumulative (a layer's input already carries its predecessors' error), which is
what matters for choosing `fallback` / `layer_bits`: leaving the worst layer float removes its
error and what it passes on. The model outputs are compared the same way and come last.

The quantize pass's own report has a cheaper SQNR per layer (first 4 samples); this module is
the tool for looking closer: every sample (or `samples`), more measures, and a table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelc.errors import InputError

__all__ = ["LayerError", "quant_error", "format_table"]

TARGET = "cpu-int8"
WORST = 3  # format_table marks this many lowest-SQNR layers


@dataclass(frozen=True)
class LayerError:
    """One quantized layer's output (kind "layer") or one model output (kind "output")
    compared against the float model."""

    name: str  # the layer's node loc (what fallback= / layer_bits= take), or the output's name
    op: str  # conv | matmul, or "output"
    value: str  # the compared value
    weight_bits: int  # 0 for model outputs
    sqnr_db: float
    cosine: float
    max_abs_error: float
    samples: int
    kind: str = "layer"


def quant_error(
    model: Any,
    calibration: Mapping[str, Any] | str | Path,
    quant_config: Mapping[str, Any] | str | Path | None = None,
    samples: int | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    **options: Any,
) -> list[LayerError]:
    """Per quantized layer (graph order), then per model output: the error of the QDQ graph
    against the float graph over the calibration samples (all, or the first `samples`).

    `model` is anything `modelc.compile` takes; `calibration` a dict of arrays (one per input
    name, samples along axis 0) or an .npz path; `quant_config` a QuantConfig as dict / JSON
    text / JSON file, else the `quantize` pass's defaults. `options` go to the importer as in
    `modelc.compile` (a torch module's `example_inputs=`, `input_names=`).
    """
    from modelc.api import import_model, load_calibration, with_quant_config
    from modelc.ir.interpreter import run_graph
    from modelc.passes.quantize import Quantize, calibration_feeds
    from modelc.passes.registry import GRAPH, PassContext, parse_pipeline, run_pipeline
    from modelc.targets.registry import get_target

    if samples is not None and samples < 1:
        raise InputError(f"quant error: samples must be >= 1, got {samples}")
    data = load_calibration(calibration)
    if data is None:
        raise InputError(
            "quant error needs calibration data: a dict of arrays, one per model input name "
            "(samples along axis 0), or an .npz path"
        )
    graph = import_model(model, input_shapes, **options)
    passes = parse_pipeline(get_target(TARGET).pipeline)
    if quant_config is not None:
        passes = with_quant_config(passes, quant_config)
    iq = next(i for i, p in enumerate(passes) if isinstance(p, Quantize))
    if any(p.produces != GRAPH for p in passes[:iq]):  # pragma: no cover - pipeline invariant
        raise AssertionError(f"{TARGET}: quantize must run on the graph")
    ctx = PassContext(calibration=data)
    float_graph = run_pipeline(graph, passes[:iq], ctx)
    qdq = run_pipeline(float_graph, [passes[iq]], ctx)
    layers = ctx.reports.get("quantize", {}).get("layers", {})
    compared = [
        (name, row["op"], row["output"], int(row["weight_bits"])) for name, row in layers.items()
    ]
    compared += [(o, "output", o, 0) for o in float_graph.outputs]
    feeds = calibration_feeds(float_graph, data, samples or 0)
    stats = {value: _Stats() for _, _, value, _ in compared}
    for feed in feeds:
        ref = {**feed, **run_graph(float_graph, feed, trace=True)}
        got = {**feed, **run_graph(qdq, feed, trace=True)}
        for value, st in stats.items():
            st.add(ref[value], got[value])
    return [
        LayerError(
            name,
            op,
            value,
            bits,
            *stats[value].result(),
            samples=len(feeds),
            kind="output" if op == "output" else "layer",
        )
        for name, op, value, bits in compared
    ]


class _Stats:
    """Running sums for SQNR and cosine over samples, without keeping the samples."""

    def __init__(self) -> None:
        self.signal = self.noise = self.dot = self.got = 0.0
        self.max_abs = 0.0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r = np.asarray(ref, np.float64).ravel()
        g = np.asarray(got, np.float64).ravel()
        d = r - g
        self.signal += float(r @ r)
        self.noise += float(d @ d)
        self.dot += float(r @ g)
        self.got += float(g @ g)
        self.max_abs = max(self.max_abs, float(np.abs(d).max()) if d.size else 0.0)

    def result(self) -> tuple[float, float, float]:
        if self.noise == 0:
            sqnr = math.inf
        elif self.signal == 0:
            sqnr = -math.inf
        else:
            sqnr = 10 * math.log10(self.signal / self.noise)
        norms = math.sqrt(self.signal * self.got)
        cosine = self.dot / norms if norms > 0 else (1.0 if self.noise == 0 else 0.0)
        return sqnr, cosine, self.max_abs


def worst_layers(rows: Sequence[LayerError], k: int = WORST) -> list[LayerError]:
    """The k layers of lowest SQNR (at most half the layers, at least one), worst first."""
    layers = [r for r in rows if r.kind == "layer"]
    k = min(k, max(1, (len(layers) + 1) // 2))
    return sorted(layers, key=lambda r: r.sqnr_db)[:k]


def format_table(rows: Sequence[LayerError], worst: int = WORST) -> str:
    """One line per layer (name, op, weight bits, SQNR dB, cosine, max abs error), the `worst`
    lowest-SQNR layers marked `<-`, then the model outputs."""
    flagged = {id(r) for r in worst_layers(rows, worst)}
    layers = [r for r in rows if r.kind == "layer"]
    outputs = [r for r in rows if r.kind == "output"]
    width = max([len("layer"), *(len(r.name) for r in rows)])
    n = rows[0].samples if rows else 0
    head = (
        f"{'layer':<{width}}  {'op':<7} {'bits':>4}  {'SQNR dB':>8}  {'cosine':>8}  {'max err':>10}"
    )
    lines = [f"quantization error against the float model ({n} samples)", head]
    for r in layers:
        mark = "  <-" if id(r) in flagged else ""
        lines.append(_line(r, width) + mark)
    if not layers:
        lines.append("(no quantized layers)")
    for r in outputs:
        lines.append(_line(r, width))
    if flagged:
        names = ", ".join(r.name for r in worst_layers(rows, worst))
        lines.append(f"<- lowest SQNR: {names} (try fallback= or layer_bits= on them)")
    return "\n".join(lines)


def _line(r: LayerError, width: int) -> str:
    bits = str(r.weight_bits) if r.weight_bits else "-"
    op = r.op if r.kind == "layer" else "output"
    return (
        f"{r.name:<{width}}  {op:<7} {bits:>4}  {_num(r.sqnr_db, 2):>8}  {_num(r.cosine, 5):>8}"
        f"  {r.max_abs_error:>10.4g}"
    )


def _num(x: float, digits: int) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else ("inf" if x > 0 else "-inf")
