"""QDQ export without torch: the demo CNN (examples/demo_cnn.onnx, built with onnx.helper).

`export_qdq` writes the graph the cpu-int8 pipeline holds after `quantize`; onnxruntime runs it
with its integer kernels and computes what the compiled cpu-int8 library computes. Also: the
float export round trip, int4 weights (opset 21), the `modelc export` command as the CLI will
wire it, and the errors a user can cause.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import modelc
from modelc.errors import Error, InputError
from modelc.export import (
    add_export_parser,
    export_onnx,
    export_qdq,
    qdq_graph,
    to_uint8_activations,
)
from modelc.frontend.onnx import load_onnx
from modelc.ir import dtypes as D
from modelc.ir.interpreter import run_graph
from modelc.passes.registry import GRAPH, PassContext, parse_pipeline, run_pipeline
from modelc.targets.registry import get_target

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo_cnn.onnx"
INPUT, SHAPE = "image", (1, 3, 32, 32)
EVAL = 16
# Built without OpenMP: under xdist a worker may have imported torch, whose OpenMP runtime then
# fights the library's (same results, ~8x slower).
SERIAL = {"extra_cflags": ["-fno-openmp"]}


def _images(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


CALIBRATION = {INPUT: _images(0, 16)}


def session(path: Path, optimized: Path | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if optimized is not None:
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def op_types(path: Path) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_float_round_trip(tmp_path: Path) -> None:
    """Imported, exported again: onnxruntime computes the same as on the original file, also
    after the cpu target's graph passes (folded, fused, canonicalized)."""
    graph = load_onnx(DEMO)
    passes = [p for p in parse_pipeline(get_target("cpu").pipeline) if p.produces == GRAPH]
    optimized = run_pipeline(graph, passes, PassContext())
    assert "fused" in {n.op for n in optimized.nodes}
    ref = session(DEMO)
    for name, g in (("imported", graph), ("optimized", optimized)):
        sess = session(export_onnx(g, tmp_path / f"{name}.onnx"))
        for x in _images(1, 4):
            (want,) = ref.run(None, {INPUT: x})
            (got,) = sess.run(None, {INPUT: x})
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_qdq_runs_integer_kernels_and_matches_the_library(tmp_path: Path) -> None:
    lib = modelc.compile(DEMO, target="cpu-int8", calibration=CALIBRATION, **SERIAL)
    for activations in ("uint8", "int8"):
        out = tmp_path / f"{activations}.onnx"
        path = export_qdq(DEMO, out, calibration=CALIBRATION, activations=activations)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        written = op_types(path)
        assert written["QuantizeLinear"] and written["DequantizeLinear"]
        sess = session(path, tmp_path / "optimized.onnx")
        fused = op_types(tmp_path / "optimized.onnx")
        assert fused["QLinearConv"] == 2 and fused["Conv"] == 0, fused
        for x in _images(1000, EVAL):
            (got,) = sess.run(None, {INPUT: x})
            np.testing.assert_allclose(got, lib(x), atol=1e-6)  # measured: equal


def test_int4_weights_and_quant_config(tmp_path: Path) -> None:
    config = {"weight_bits": 4, "method": "percentile", "samples": 8}
    path = export_qdq(DEMO, tmp_path / "q4.onnx", calibration=CALIBRATION, quant_config=config)
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 21
    int4 = [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT4]
    assert len(int4) == 3 * 2  # three weights and their zero points
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["modelc.quant_config"])["weight_bits"] == 4
    assert "quantize{" in props["modelc.pipeline"]
    lib = modelc.compile(
        DEMO, target="cpu-int8", calibration=CALIBRATION, quant_config=config, **SERIAL
    )
    sess = session(path)
    for x in _images(2000, 4):
        (got,) = sess.run(None, {INPUT: x})
        np.testing.assert_allclose(got, lib(x), atol=1e-6)


def test_qdq_graph_is_the_cpu_int8_graph_before_fold_qdq() -> None:
    graph, reports = qdq_graph(DEMO, calibration=CALIBRATION)
    ops = collections.Counter(n.op for n in graph.nodes)
    assert ops["conv"] == 2 and ops["matmul"] == 1 and "qconv" not in ops
    assert reports["quantize"]["quantized"] == 3
    assert reports["pipeline"].endswith("quantize")


def test_uint8_activations_are_the_same_values() -> None:
    graph, _ = qdq_graph(DEMO, calibration=CALIBRATION)
    shifted = to_uint8_activations(graph)
    before = [n.attrs["to"] for n in graph.nodes if n.op == "quantize"]
    after = [n.attrs["to"] for n in shifted.nodes if n.op == "quantize"]
    assert set(before) == {D.i8} and set(after) == {D.u8}
    weights = [
        n for n in shifted.nodes if n.op == "dequantize" and n.inputs[0] in shifted.constant_map
    ]
    assert {shifted.types[n.inputs[0]].dtype for n in weights} == {D.i8, D.i32}
    for x in _images(3000, 4):
        trace = run_graph(graph, {INPUT: x}, trace=True)
        got = run_graph(shifted, {INPUT: x}, trace=True)
        for n in graph.nodes:
            if n.op == "dequantize":
                np.testing.assert_array_equal(got[n.output.name], trace[n.output.name])


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="modelc")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npz = tmp_path / "calib.npz"
    np.savez(npz, **CALIBRATION)
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"method": "mse"}))
    out = tmp_path / "out" / "demo_qdq.onnx"
    argv = ["export", str(DEMO), "--calibration", str(npz), "--quant-config", str(best)]
    assert _run_cli([*argv, "-o", str(out), "--input-shape", "image=1x3x32x32"]) == 0
    printed = capsys.readouterr().out
    assert f"-> {out}" in printed and "opset 20" in printed and "quantized  3 layers" in printed
    (y,) = session(out).run(None, {INPUT: _images(5, 1)[0]})
    assert y.shape == (1, 10)
    with pytest.raises(FileNotFoundError):
        _run_cli(["export", str(DEMO), "--calibration", str(tmp_path / "no.npz"), "-o", "x"])


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no samples for model inputs"):
        export_qdq(DEMO, tmp_path / "x.onnx", calibration={"x": _images(0, 2)})
    with pytest.raises(InputError, match="activations 'int16'"):
        export_qdq(DEMO, tmp_path / "x.onnx", calibration=CALIBRATION, activations="int16")
    with pytest.raises(Error, match="unknown keys"):
        export_qdq(DEMO, tmp_path / "x.onnx", calibration=CALIBRATION, quant_config={"bits": 3})


def test_public_names_resolve() -> None:
    import modelc.export as export

    assert sorted(export.__all__) == sorted(export._WHERE)
    assert all(callable(getattr(export, n)) for n in export.__all__ if n != "BASE_OPSET")
    with pytest.raises(AttributeError):
        _ = export.no_such_name
