"""Shared test fixtures: the model zoo and the `torch` marker.

    @pytest.mark.torch
    def test_resnet(zoo_model):
        path = zoo_model("resnet18")                  # dynamo export, BN folded
        path = zoo_model("resnet18", dynamo=False)    # the legacy TorchScript exporter
        path = zoo_model("resnet18", fold=False)      # keeps BatchNormalization nodes

`zoo_model` exports each (model, exporter, fold) combination once per test run, also under
pytest-xdist: the workers share one cache directory and take a file lock while exporting, so two
workers never export the same model twice or read a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# tests/ on sys.path, so every test can `import zoo` whatever pytest's import mode is.
sys.path.insert(0, str(Path(__file__).parent))

HAVE_TORCH = importlib.util.find_spec("torch") is not None
NO_TORCH_REASON = "PyTorch is not installed (`make test` installs torch==2.13.0, CPU build)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "torch: needs PyTorch (the zoo models are built with it)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAVE_TORCH:
        return
    skip = pytest.mark.skip(reason=NO_TORCH_REASON)
    for item in items:
        if "torch" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory of exported zoo models for the whole run (shared by xdist workers)."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp is a child of the run's shared root.
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "zoo"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def zoo_model(zoo_dir: Path) -> Callable[..., Path]:
    """`zoo_model(name, dynamo=True, fold=True) -> Path` of the exported .onnx file."""

    def get(name: str, dynamo: bool = True, fold: bool = True) -> Path:
        if not HAVE_TORCH:
            pytest.skip(NO_TORCH_REASON)
        import zoo

        if name not in zoo.ZOO:
            raise KeyError(f"no zoo model {name!r}; the zoo has {sorted(zoo.ZOO)}")
        stem = f"{name}-{'dynamo' if dynamo else 'legacy'}{'' if fold else '-nofold'}"
        path = zoo_dir / f"{stem}.onnx"
        with _lock(zoo_dir / f"{stem}.lock"):
            if not path.exists():
                partial = zoo_dir / f"{stem}.{os.getpid()}.partial.onnx"
                zoo.export(name, partial, dynamo=dynamo, fold=fold)
                partial.replace(path)
        return path

    return get


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock between xdist workers, released when the file closes."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
