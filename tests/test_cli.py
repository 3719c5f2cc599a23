"""The `modelc` command line: argument parsing, plumbing into the Python API, and the promise
that a user's mistake prints one line and exits 2 (never a traceback).

Most tests replace `modelc.compile` / `modelc.load` with fakes, so they check the CLI alone. The
tests marked `toolchain` at the end go through the real compiler and the host C compiler.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelc
from modelc import cli
from modelc.errors import UnsupportedOpError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo_cnn.onnx"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("modelc: error: ")
    for f in fragments:
        assert f in lines[0]


# ---- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["compile"], ["run"], ["inspect"]])
def test_help(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, _ = run_cli(capsys, *command, "--help")
    assert code == 0
    assert out.startswith("usage: modelc")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"modelc {modelc.__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys)
    assert code == 2 and "usage: modelc" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input=1x3x224x224", ("input", (1, 3, 224, 224))),
        ("x=1,3,8,8", ("x", (1, 3, 8, 8))),
        ("ids=7", ("ids", (7,))),
        ("input.1=1x4", ("input.1", (1, 4))),
        ("a=b=2x2", ("a=b", (2, 2))),
    ],
)
def test_parse_shape_arg(text: str, expected: tuple[str, tuple[int, ...]]) -> None:
    assert cli.parse_shape_arg(text) == expected


@pytest.mark.parametrize("text", ["1x3x224x224", "x=", "=1x2", "x=1xax3", "x=1x-2", "x=1x0"])
def test_bad_input_shape(capsys: pytest.CaptureFixture[str], text: str) -> None:
    code, _, err = run_cli(capsys, "compile", str(DEMO), "-o", "out", "--input-shape", text)
    assert code == 2
    assert "bad input shape" in err and "Traceback" not in err


# ---- user errors: one line, exit 2 ---------------------------------------------------------------


def test_compile_missing_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    code, _, err = run_cli(capsys, "compile", str(missing), "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err, str(missing), "No such file")


def test_compile_a_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "compile", str(tmp_path), "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err, "is a folder")


def test_run_missing_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "run", str(tmp_path / "out"), "--input", "x.npy")
    assert_one_line_error(code, err, "No such file")


def test_run_on_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run", str(DEMO), "--input", "x.npy")
    assert_one_line_error(code, err, "not a folder")


def test_inspect_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "inspect", str(tmp_path / "nope.onnx"))
    assert_one_line_error(code, err, "No such file")


def test_inspect_folder_without_manifest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "inspect", str(tmp_path))
    assert_one_line_error(code, err, "no manifest.json")


def test_api_error_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise UnsupportedOpError("node 'n1' (Foo): op Foo is not supported\nremove it, or ...")

    monkeypatch.setattr(modelc, "compile", fail, raising=False)
    code, _, err = run_cli(capsys, "compile", str(DEMO), "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err, "op Foo is not supported remove it")


def test_keyboard_interrupt(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def interrupt(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(modelc, "compile", interrupt, raising=False)
    code, _, _ = run_cli(capsys, "compile", str(DEMO), "-o", str(tmp_path / "out"))
    assert code == 130


def test_internal_file_error_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A missing file the user never named is a bug (or a missing tool), not a user error."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory", "/usr/lib/some/internal.h")

    monkeypatch.setattr(modelc, "compile", fail, raising=False)
    with pytest.raises(FileNotFoundError):
        cli.main(["compile", str(DEMO), "-o", str(tmp_path / "out")])


def test_user_error_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modelc.cli", "compile", str(tmp_path / "x.onnx"), "-o", "o"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("modelc: error: ")


# ---- plumbing into the API, with fakes -----------------------------------------------------------


class FakeLib:
    inputs = [("image", (1, 3, 4, 4), "f32")]
    outputs = [("probs/out:0", (1, 2), "f32")]
    manifest = {"target": "cpu", "kernels": ["k0", "k1"], "workspace_bytes": 1024}

    def __init__(self) -> None:
        self.saved: str | None = None
        self.fed: dict[str, np.ndarray] = {}

    def save(self, path: str) -> None:
        self.saved = path

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.fed = feeds
        return {"probs/out:0": np.array([[0.25, 0.75]], np.float32)}


def test_compile_passes_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    lib = FakeLib()

    def fake_compile(model: Any, **kwargs: Any) -> FakeLib:
        calls.append((model, kwargs))
        return lib

    monkeypatch.setattr(modelc, "compile", fake_compile, raising=False)
    out = str(tmp_path / "out")
    argv = ["compile", str(DEMO), "--target", "cpu", "-o", out, "--input-shape", "image=1x3x8x8"]
    code, stdout, _ = run_cli(capsys, *argv, "--pipeline", "fold-constants", "--print-after-all")
    assert code == 0
    assert calls == [
        (
            str(DEMO),
            {
                "target": "cpu",
                "input_shapes": {"image": (1, 3, 8, 8)},
                "pipeline": "fold-constants",
                "print_after_all": True,
            },
        )
    ]
    assert lib.saved == out
    assert "kernels    2" in stdout and "1,024 bytes" in stdout

    calls.clear()
    run_cli(capsys, "compile", str(DEMO), "-o", out)
    assert calls == [(str(DEMO), {"target": "cpu", "input_shapes": None})]


def test_run_writes_outputs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lib = FakeLib()
    monkeypatch.setattr(modelc, "load", lambda path: lib, raising=False)
    x = np.ones((1, 3, 4, 4), np.float32)
    np.save(tmp_path / "x.npy", x)
    results = tmp_path / "results"
    for spec in (f"image={tmp_path / 'x.npy'}", str(tmp_path / "x.npy")):
        code, out, _ = run_cli(
            capsys, "run", str(tmp_path), "--input", spec, "--output-dir", str(results)
        )
        assert code == 0
        np.testing.assert_array_equal(lib.fed["image"], x)
        saved = np.load(results / "probs_out_0.npy")
        np.testing.assert_array_equal(saved, [[0.25, 0.75]])
        assert "probs/out:0: shape (1, 2) float32 min 0.25 max 0.75 mean 0.5" in out


def test_run_input_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(modelc, "load", lambda path: FakeLib(), raising=False)
    (tmp_path / "junk.npy").write_text("not numpy")
    cases = {
        "wrong=x.npy": "no input 'wrong'",
        f"image={tmp_path / 'junk.npy'}": "not a .npy array file",
        f"image={tmp_path / 'absent.npy'}": "No such file",
    }
    for spec, fragment in cases.items():
        code, _, err = run_cli(capsys, "run", str(tmp_path), "--input", spec)
        assert_one_line_error(code, err, fragment)
    code, _, err = run_cli(capsys, "run", str(tmp_path))
    assert_one_line_error(code, err, "no --input for image")


def test_output_file_names_are_safe_and_unique() -> None:
    taken: set[str] = set()
    names = [cli._file_name(n, taken) for n in ["a/b", "a:b", "..", "out", "out"]]
    assert names == ["a_b.npy", "a_b_1.npy", "output.npy", "out.npy", "out_1.npy"]


def test_inspect_output_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = {
        "target": "cpu",
        "pipeline": "fold-constants,plan-memory",
        "inputs": [{"name": "image", "shape": [1, 3, 32, 32], "dtype": "f32"}],
        "outputs": [["probs", [1, 10], "f32"]],
        "kernels": ["conv1", "conv2"],
        "workspace_bytes": 4096,
        "weights_bytes": 6248,
        "passes": [{"name": "fold-constants", "seconds": 0.0012}],
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "model.ir").write_text("graph @demo() {}\n")
    code, out, _ = run_cli(capsys, "inspect", str(tmp_path), "--ir")
    assert code == 0
    for fragment in ["target     cpu", "image: f32[1, 3, 32, 32]", "probs: f32[1, 10]"]:
        assert fragment in out
    assert "kernels    2" in out and "4,096 bytes" in out and "fold-constants" in out
    assert out.endswith("graph @demo() {}\n")


# ---- end to end through the real compiler --------------------------------------------------------


def test_not_onnx_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"this is not a protobuf\x00\xff")
    code, _, err = run_cli(capsys, "compile", str(bogus), "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err)
    code, _, err = run_cli(capsys, "inspect", str(bogus))
    assert_one_line_error(code, err)


def test_inspect_demo_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "inspect", str(DEMO))
    assert code == 0
    summary = out[out.rindex("nodes,") :]
    # The summary counts graph-IR ops (Gemm became matmul + add, GlobalAveragePool reduce_mean).
    for op in ("conv", "relu", "max_pool", "matmul", "reduce_mean", "softmax"):
        assert op in summary
    assert "conv         2" in summary


@pytest.mark.toolchain
def test_compile_run_inspect_demo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "compile", str(DEMO), "--target", "cpu", "-o", str(out))
    assert code == 0, err
    assert "target     cpu" in stdout
    for name in ("model.h", "manifest.json"):
        assert (out / name).is_file(), name

    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    results = tmp_path / "results"
    argv = ["run", str(out), "--input", str(tmp_path / "x.npy"), "--output-dir", str(results)]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    (want,) = ort.InferenceSession(str(DEMO), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )
    np.testing.assert_allclose(np.load(results / "probs.npy"), want, rtol=1e-4, atol=1e-4)

    code, stdout, err = run_cli(capsys, "inspect", str(out))
    assert code == 0, err
    assert "target     cpu" in stdout and "image" in stdout and "probs" in stdout
