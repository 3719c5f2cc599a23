"""modelc.quant_error and `modelc inspect MODEL --quant-error`: per-layer error of the QDQ graph
against the float graph, the table that marks the worst layers, and that leaving the worst
layer float (fallback) raises the model output's SQNR."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelc.cli import main
from modelc.errors import InputError
from modelc.ir.interpreter import run_graph
from modelc.passes import quant_calibrate as C
from modelc.quant_error import LayerError, format_table, quant_error, worst_layers

# conv2's per-tensor 4-bit weights are ruined by one large weight: the layer to fall back
CONFIG = {"weight_bits": 4, "per_channel": False}


def model(path: Path) -> Path:
    """conv1 3->8 - relu - conv2 8->8 - relu - global average pool - flatten - gemm 8->10."""
    rng = np.random.default_rng(0)
    w2 = (rng.standard_normal((8, 8, 3, 3)) * 0.15).astype(np.float32)
    w2[0, 0, 1, 1] = 8.0
    weights = {
        "w1": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "b1": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "w2": w2,
        "w3": (rng.standard_normal((10, 8)) * 0.5).astype(np.float32),
        "b3": (rng.standard_normal(10) * 0.1).astype(np.float32),
    }
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], "conv1", **conv),
        helper.make_node("Relu", ["c1"], ["r1"], "relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], "conv2", **conv),
        helper.make_node("Relu", ["c2"], ["r2"], "relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], "gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], "flatten", axis=1),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["y"], "fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "qerr",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w, n) for n, w in weights.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(m, path)
    return path


def calibration(n: int = 8) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal((n, 1, 3, 8, 8)).astype(np.float32)}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    npz = tmp_path / "calib.npz"
    np.savez(npz, **calibration())
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(CONFIG))
    return model(tmp_path / "qerr.onnx"), npz, cfg


def output_row(rows: list[LayerError]) -> LayerError:
    (out,) = [r for r in rows if r.kind == "output"]
    return out


def test_rows_against_numpy(files: tuple[Path, Path, Path]) -> None:
    path, npz, _ = files
    rows = quant_error(path, npz, CONFIG, samples=5)
    assert [(r.name, r.op, r.weight_bits) for r in rows if r.kind == "layer"] == [
        ("conv1", "conv", 4),
        ("conv2", "conv", 4),
        ("fc", "matmul", 4),
    ]
    assert all(r.samples == 5 for r in rows) and output_row(rows).value == "y"
    # the model output's measures, recomputed from the two graphs quant_error compares
    from modelc.api import with_quant_config
    from modelc.frontend.onnx import load_onnx
    from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline
    from modelc.targets.registry import get_target

    data = calibration()
    passes = with_quant_config(parse_pipeline(get_target("cpu-int8").pipeline), CONFIG)
    iq = next(i for i, p in enumerate(passes) if p.name == "quantize")
    ctx = PassContext(calibration=data)
    fg = run_pipeline(load_onnx(str(path)), passes[:iq], ctx)
    qg = run_pipeline(fg, [passes[iq]], ctx)
    ref = np.concatenate([run_graph(fg, {"x": x})["y"].ravel() for x in data["x"][:5]])
    got = np.concatenate([run_graph(qg, {"x": x})["y"].ravel() for x in data["x"][:5]])
    out = output_row(rows)
    assert out.sqnr_db == pytest.approx(C.sqnr_db(ref, got), rel=1e-6)
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    cos = float(ref @ got / np.sqrt((ref @ ref) * (got @ got)))
    assert out.cosine == pytest.approx(cos, rel=1e-9)
    assert out.max_abs_error == pytest.approx(float(np.abs(ref - got).max()), rel=1e-6)


def test_falling_back_the_worst_layer_raises_output_sqnr(files: tuple[Path, Path, Path]) -> None:
    path, npz, _ = files
    rows = quant_error(path, npz, CONFIG)
    worst = worst_layers(rows, 1)[0]
    assert worst.name == "conv2"
    better = quant_error(path, npz, {**CONFIG, "fallback": [worst.name]})
    assert "conv2" not in [r.name for r in better]
    assert output_row(better).sqnr_db > output_row(rows).sqnr_db + 6


def test_cli_prints_the_table(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, npz, cfg = files
    argv = ["inspect", str(path), "--quant-error", "--calibration", str(npz)]
    assert main([*argv, "--quant-config", str(cfg), "--samples", "4"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "quantization error against the float model (4 samples)"
    assert lines[1].split() == ["layer", "op", "bits", "SQNR", "dB", "cosine", "max", "err"]
    by_name = {line.split()[0]: line for line in lines[2:]}
    assert by_name["conv2"].endswith("<-") and by_name["conv2"].split()[1:3] == ["conv", "4"]
    assert not by_name["conv1"].endswith("<-")  # 3 layers: only the worst (at most half)
    assert by_name["y"].split()[1:3] == ["output", "-"]
    assert "lowest SQNR: conv2" in out
    # without a config: the pass's defaults (8-bit weights)
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[2] == "8"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([], "add --calibration calib.npz"),
        (["--calibration", "missing.npz"], "missing.npz: no such file"),
        (["--calibration", "CALIB", "--samples", "0"], "--samples must be >= 1"),
    ],
)
def test_cli_errors(
    files: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    fragment: str,
) -> None:
    path, npz, _ = files
    extra = [str(npz) if e == "CALIB" else e for e in extra]
    assert main(["inspect", str(path), "--quant-error", *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("modelc: error: ")
    assert fragment in err


def test_cli_calibration_needs_quant_error(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, npz, _ = files
    assert main(["inspect", str(path), "--calibration", str(npz)]) == 2
    assert "only go with --quant-error" in capsys.readouterr().err


def test_format_table_marks_three_lowest() -> None:
    rows = [
        LayerError(f"l{i}", "conv", f"v{i}", 8, sqnr, 0.99, 0.1, 4)
        for i, sqnr in enumerate([30.0, 12.0, 25.0, 9.0, math.inf, 18.0, 40.0])
    ]
    rows.append(LayerError("y", "output", "y", 0, 15.0, 0.98, 0.2, 4, kind="output"))
    marked = [line.split()[0] for line in format_table(rows).splitlines() if line.endswith("<-")]
    assert marked == ["l1", "l3", "l5"]
    assert " inf " in format_table(rows)
    with pytest.raises(InputError, match="calibration"):
        quant_error(Path("unused.onnx"), None)  # type: ignore[arg-type]


@pytest.mark.torch
def test_torch_module() -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    data = {"input": np.random.default_rng(2).standard_normal((6, 2, 16)).astype(np.float32)}
    rows = quant_error(net.eval(), data, input_shapes={"input": (2, 16)})
    assert [(r.op, r.weight_bits) for r in rows if r.kind == "layer"] == [("matmul", 8)] * 2
    assert output_row(rows).sqnr_db > 25 and output_row(rows).samples == 6
