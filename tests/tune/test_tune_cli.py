"""`modelc tune` on the command line: tune, then compile with TUNE_DIR/best.json; mistakes
print one line and exit 2 like every modelc command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tune_nets import labels_for, make_model, samples

from modelc import cli
from modelc.tune.cli import add_tune_parser

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """`modelc ARGS` through cli.main, with the tune subcommand added if cli.py does not yet."""
    build = cli.build_parser

    def with_tune() -> argparse.ArgumentParser:
        parser = build()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "tune" not in sub.choices:
            add_tune_parser(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", with_tune)

    def go(*argv: str) -> tuple[int, str, str]:
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return go


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    model = make_model(d / "tiny.onnx")
    x = samples(30, seed=2)
    np.savez(d / "calib.npz", x=samples(16, seed=1))
    np.savez(d / "eval.npz", x=x, labels=labels_for(model, x))
    np.savez(d / "nolabels.npz", x=x)
    return {"model": model, "calib": d / "calib.npz", "eval": d / "eval.npz", "dir": d}


def test_tune_then_compile(run: Run, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "tune"
    args = [files["model"], "--calibration", files["calib"], "--eval-data", files["eval"]]
    code, stdout, err = run("tune", *args, "--trials", 3, "--strategy", "grid", "-o", out)
    assert code == 0, err
    assert "rank" in stdout and "float model" in stdout and "best: trial" in stdout
    assert (out / "best.json").is_file() and (out / "pareto.png").is_file()
    assert len((out / "log.jsonl").read_text().splitlines()) == 1 + 3
    # stderr is not a terminal here: one progress line per trial with the best so far
    progress = [line for line in err.splitlines() if line.startswith("tune: [")]
    assert len(progress) == 3 and progress[-1].startswith("tune: [3/3]"), err
    assert "| best " in progress[-1]
    lib_dir = tmp_path / "lib"
    code, stdout, err = run(
        "compile",
        files["model"],
        "--target",
        "cpu-int8",
        "--calibration",
        files["calib"],
        "--quant-config",
        out / "best.json",
        "-o",
        lib_dir,
    )
    assert code == 0, err
    assert (lib_dir / "manifest.json").is_file()


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelc: error: "), err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_errors(run: Run, files: dict[str, Path], tmp_path: Path) -> None:
    base = [files["model"], "--calibration", files["calib"], "-o", tmp_path / "t"]
    code, _, err = run("tune", *base, "--eval-data", files["dir"] / "nolabels.npz")
    one_line_error(code, err, "no 'labels' array", "labels=")
    code, _, err = run("tune", *base, "--strategy", "annealing")
    one_line_error(code, err, "unknown tuning strategy 'annealing'", "grid", "random")
    code, _, err = run("tune", *base, "--space", "huge")
    one_line_error(code, err, "unknown search space", "quantune")
    code, _, err = run("tune", *base, "--objective", "latency")
    one_line_error(code, err, "--max-loss")
    code, _, err = run("tune", files["model"], "--calibration", tmp_path / "no.npz", "-o", "t")
    one_line_error(code, err, "no.npz: no such file")
    code, stdout, _ = run("tune", "--help")
    assert code == 0 and "--calibration" in stdout and "--ray" in stdout
