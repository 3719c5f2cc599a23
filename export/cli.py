"""The `modelc export` subcommand (wired into `modelc.cli` by `add_export_parser`).

    modelc export MODEL --calibration calib.npz [--quant-config best.json]
                  [--input-shape NAME=DIMS] -o model_qdq.onnx

Quantizes MODEL as `--target cpu-int8` does and writes the QDQ graph as ONNX. Errors follow the
CLI's rules (a `modelc.Error` or a missing file of the user's is one line and status 2); this
module imports the compiler only inside the command, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `export` subcommand to `sub` (what `parser.add_subparsers()` returns)."""
    from modelc.cli import _add_input_shape

    p: argparse.ArgumentParser = sub.add_parser(
        "export", help="quantize a model (as cpu-int8 does) and write it as QDQ ONNX"
    )
    p.description = (
        "Quantize MODEL from calibration samples as `--target cpu-int8` would, and write the "
        "quantized graph as an ONNX model in QDQ form (QuantizeLinear / DequantizeLinear around "
        "float ops, int8 or int4 weights, int32 biases; opset 20, or 21 with int4) that "
        "onnxruntime and other ONNX runtimes run with their integer kernels."
    )
    p.add_argument("model", metavar="MODEL", help="the model file (.onnx)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the .onnx file to write")
    p.add_argument(
        "--calibration",
        required=True,
        metavar="NPZ",
        help="calibration samples: an .npz with one array per model input name, samples along "
        "axis 0",
    )
    p.add_argument(
        "--quant-config",
        metavar="JSON",
        help="quantization options as a JSON file (QuantConfig.to_json), for the quantize pass",
    )
    p.add_argument(
        "--activations",
        choices=("uint8", "int8"),
        default="uint8",
        help="element type of activations in the file: uint8 (default; the same values, and "
        "what onnxruntime's x86 integer kernels want) or int8 (as modelc computes them)",
    )
    _add_input_shape(p)
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    from modelc.cli import _require_file, _shapes
    from modelc.export.qdq import qdq_graph, write_qdq

    _require_file(args.model)
    _require_file(args.calibration)
    if args.quant_config is not None:
        _require_file(args.quant_config)
    start = time.perf_counter()
    graph, reports = qdq_graph(
        args.model,
        calibration=args.calibration,
        quant_config=args.quant_config,
        input_shapes=_shapes(args.input_shape),
    )
    write_qdq(graph, reports, args.output, activations=args.activations)
    seconds = time.perf_counter() - start
    opset, nodes = _summary(args.output)
    quant = reports.get("quantize", {})
    print(f"exported {args.model} -> {args.output} in {seconds:.2f} s")
    print(f"  format     QDQ ONNX, opset {opset}, {args.activations} activations")
    print(f"  quantized  {quant.get('quantized', 0)} layers")
    print(f"  nodes      {nodes}")
    return 0


def _summary(path: str) -> tuple[int, int]:
    """(opset, node count) of the written file."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return opset, len(model.graph.node)
