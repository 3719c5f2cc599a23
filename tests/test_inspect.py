"""Reports: the manifest's per-launch `kernels_report` (MACs and bytes against hand formulas),
`modelc inspect OUT` printing it, and `modelc inspect --passes` with its unused-pass warning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import modelc
from modelc import cli
from modelc.ir import GraphBuilder, TensorType
from modelc.ir.dtypes import f32
from modelc.ir.graph import Graph
from modelc.passes.usage import UnusedPassWarning, unused_passes, warn_unused_passes

N, C, H, W = 2, 3, 8, 8  # input
M, K = 4, 3  # conv: output channels, kernel size (stride 1, pad 1: output 8x8)
CLASSES = 10
UNFUSED = "fold-constants,eliminate-dead-code,lower-to-loops,plan-memory"


def _small_cnn() -> Graph:
    """conv(3x3, bias) -> relu -> max_pool(2) -> reshape -> matmul -> add(bias)."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("small_cnn")
    x = b.add_input("x", TensorType((N, C, H, W), f32))
    w = b.add_constant(rng.standard_normal((M, C, K, K)).astype(np.float32), "w")
    bias = b.add_constant(rng.standard_normal(M).astype(np.float32), "b")
    conv = dict(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1))
    v = b.add("relu", b.add("conv", x, w, bias, **conv))
    v = b.add("max_pool", v, kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1))
    v = b.add("reshape", v, shape=(N, M * 4 * 4))
    fc = b.add_constant(rng.standard_normal((M * 16, CLASSES)).astype(np.float32), "fc")
    fc_b = b.add_constant(rng.standard_normal(CLASSES).astype(np.float32), "fc_b")
    b.set_outputs([b.add("add", b.add("matmul", v, fc), fc_b)])
    return b.build()


CONV_MACS = N * M * H * W * (C // 1) * K * K  # N*M*outH*outW*C/g*kh*kw
FC_MACS = N * CLASSES * (M * 16)  # batch*m*n*k with m = N rows
X_BYTES, W_BYTES, B_BYTES = N * C * H * W * 4, M * C * K * K * 4, M * 4
CONV_OUT = N * M * H * W * 4
POOL_OUT = N * M * 4 * 4 * 4
FC_BYTES, FCB_BYTES, LOGITS = M * 16 * CLASSES * 4, CLASSES * 4, N * CLASSES * 4


@pytest.fixture(scope="module")
def unfused(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("unfused")
    modelc.compile(_small_cnn(), target="cpu", pipeline=UNFUSED, output_dir=out)
    return out


def _report(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["kernels_report"]


def test_kernels_report_matches_hand_formulas(unfused: Path) -> None:
    rows = _report(unfused)
    assert [r["op"] for r in rows] == ["conv", "relu", "max_pool", "matmul", "add"]
    conv, relu, pool, mm, add = rows
    assert conv["macs"] == CONV_MACS == 13824
    assert conv["bytes_read"] == X_BYTES + W_BYTES + B_BYTES
    assert conv["bytes_written"] == CONV_OUT
    assert conv["outputs"] == [[N, M, H, W]]
    assert (relu["macs"], relu["bytes_read"], relu["bytes_written"]) == (0, CONV_OUT, CONV_OUT)
    assert relu["inplace"]  # relu overwrites the conv output, which dies there
    assert (pool["bytes_read"], pool["bytes_written"]) == (CONV_OUT, POOL_OUT)
    # matmul reads the pooled values through the reshape view: the same bytes.
    assert mm["macs"] == FC_MACS == 1280
    assert (mm["bytes_read"], mm["bytes_written"]) == (POOL_OUT + FC_BYTES, LOGITS)
    assert mm["outputs"] == [[N, CLASSES]]
    assert (add["bytes_read"], add["bytes_written"]) == (LOGITS + FCB_BYTES, LOGITS)
    manifest = json.loads((unfused / "manifest.json").read_text())
    assert manifest["workspace_strategy"] == "best-fit"


def test_fused_launches_keep_macs_and_move_fewer_bytes(tmp_path: Path) -> None:
    """The default pipeline fuses conv+relu and matmul+add: same MACs, fewer bytes."""
    lib = modelc.compile(_small_cnn(), target="cpu", output_dir=tmp_path)
    rows = lib.manifest["kernels_report"]
    assert sum(r["macs"] for r in rows) == CONV_MACS + FC_MACS
    assert len(rows) < 5, "the default pipeline should fuse conv+relu and matmul+add"
    first = rows[0]
    assert first["macs"] == CONV_MACS
    assert first["bytes_written"] == CONV_OUT
    assert "relu" in first["ops"]


def test_inspect_prints_the_launch_table(unfused: Path, capsys) -> None:
    assert cli.main(["inspect", str(unfused)]) == 0
    out = capsys.readouterr().out
    assert "launches   5 (program order" in out
    lines = [ln.split() for ln in out.splitlines()]
    conv_row = next(ln for ln in lines if len(ln) > 2 and ln[0] == "0")
    assert conv_row[2:4] == ["conv", f"{N}x{M}x{H}x{W}"]
    assert conv_row[4] == "13.82k"  # MACs
    assert conv_row[5] == f"{100 * CONV_MACS / (CONV_MACS + FC_MACS):.1f}%"
    relu_row = next(ln for ln in lines if len(ln) > 2 and ln[0] == "1")
    assert relu_row[2] == "relu" and relu_row[6].endswith("*")  # written in place
    total = CONV_MACS + FC_MACS
    assert f"MACs {total:,};" in out
    moved = sum(r["bytes_read"] + r["bytes_written"] for r in _report(unfused))
    assert f"bytes moved {moved:,}" in out
    assert "workspace" in out and "lower bound" in out


def test_inspect_passes_lists_pipelines_and_warns(capsys) -> None:
    assert cli.main(["inspect", "--passes"]) == 0
    out, err = capsys.readouterr()
    assert "plan-memory" in out and "cpu" in out
    unused = unused_passes()
    for name in unused:
        assert name in err
    assert ("warning" in err) == bool(unused)


def test_inspect_without_a_path_is_a_usage_error(capsys) -> None:
    assert cli.main(["inspect"]) == 2
    assert "give a model file or an output folder" in capsys.readouterr().err


def test_unused_passes_finds_a_pass_no_pipeline_runs() -> None:
    from modelc.passes.registry import all_passes

    passes = all_passes()
    pipelines = {"t1": "fold-constants,lower-to-loops", "t2": "lower-to-loops,plan-memory"}
    unused = unused_passes(passes, pipelines)
    assert "plan-memory" not in unused and "fold-constants" not in unused
    assert "eliminate-dead-code" in unused
    with pytest.warns(UnusedPassWarning, match="eliminate-dead-code"):
        warn_unused_passes(unused)


def test_every_registered_pass_runs_in_some_target_pipeline() -> None:
    """Warns (does not fail) naming passes only `--pipeline` reaches: an opt-in pass may be
    deliberate, but a forgotten one shows up in every test run."""
    unused = unused_passes()
    if unused:
        with pytest.warns(UnusedPassWarning):
            warn_unused_passes(unused)
        import warnings

        warnings.warn(
            f"registered passes no target pipeline runs: {', '.join(unused)}",
            UnusedPassWarning,
            stacklevel=1,
        )
