"""`CompiledModel`: a compiled model folder plus a way to run it.

The folder is the artifact (model.h, sources, weights, build file, library, manifest.json);
this object is a handle on it. `save(dir)` copies the folder, `modelc.load(dir)` reopens one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from modelc.errors import InputError, ModelLoadError


class TensorSpec(NamedTuple):
    name: str
    shape: tuple[int, ...]
    dtype: str  # modelc dtype name, e.g. "f32"


MANIFEST = "manifest.json"


class CompiledModel:
    def __init__(
        self,
        path: Path,
        manifest: Mapping[str, Any],
        runner: Any | None,
        tmp: tempfile.TemporaryDirectory[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.manifest = dict(manifest)
        self._runner = runner
        self._tmp = tmp  # keeps a temporary build folder alive as long as this handle
        self.inputs = [
            TensorSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in manifest["inputs"]
        ]
        self.outputs = [
            TensorSpec(o["name"], tuple(o["shape"]), o["dtype"]) for o in manifest["outputs"]
        ]

    @property
    def target(self) -> str:
        return str(self.manifest["target"])

    def __repr__(self) -> str:
        ins = ", ".join(f"{t.name}: {t.dtype}{list(t.shape)}" for t in self.inputs)
        return f"<CompiledModel target={self.target} ({ins}) at {self.path}>"

    # ---- running ----

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on named inputs; returns outputs by name."""
        if self._runner is None:
            raise InputError(
                f"target {self.target} cannot run on this machine (no runner); "
                f"the generated sources are in {self.path}"
            )
        arrays = self._check_inputs(feeds)
        outs = self._runner.run(arrays)
        return {spec.name: o for spec, o in zip(self.outputs, outs)}

    def __call__(self, *arrays: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        if len(arrays) != len(self.inputs):
            names = ", ".join(t.name for t in self.inputs)
            raise InputError(f"model takes {len(self.inputs)} inputs ({names}), got {len(arrays)}")
        result = self.run({t.name: a for t, a in zip(self.inputs, arrays)})
        outs = tuple(result[t.name] for t in self.outputs)
        return outs[0] if len(outs) == 1 else outs

    def _check_inputs(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        from modelc.ir.dtypes import parse_dtype

        expected = {t.name for t in self.inputs}
        extra = sorted(set(feeds) - expected)
        missing = sorted(expected - set(feeds))
        if extra or missing:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(missing)}")
            if extra:
                parts.append(f"unknown input(s) {', '.join(extra)}")
            raise InputError(
                f"{'; '.join(parts)}; the model's inputs are {', '.join(sorted(expected))}"
            )
        arrays = []
        for spec in self.inputs:
            x = feeds[spec.name]
            if not isinstance(x, np.ndarray):
                x = np.asarray(x)
            want = parse_dtype(spec.dtype).numpy
            if x.dtype != want:
                raise InputError(
                    f"input {spec.name!r}: dtype {x.dtype} given, the model takes {want} "
                    f"({spec.dtype}); convert with .astype(np.{want})"
                )
            if tuple(x.shape) != spec.shape:
                raise InputError(
                    f"input {spec.name!r}: shape {tuple(x.shape)} given, the model was compiled "
                    f"for {spec.shape} (recompile with input_shapes / --input-shape to change it)"
                )
            arrays.append(np.ascontiguousarray(x))
        return arrays

    # ---- persistence ----

    def save(self, directory: str | Path) -> Path:
        """Copy the compiled folder to `directory` (created if needed); returns its path."""
        dst = Path(directory)
        if dst.resolve() == self.path.resolve():
            return dst
        dst.mkdir(parents=True, exist_ok=True)
        for item in self.path.iterdir():
            target = dst / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
        return dst


def load(directory: str | Path) -> CompiledModel:
    """Reopen a compiled model folder (rebuilding the library if it is missing)."""
    from modelc.targets.registry import get_target

    path = Path(directory)
    mf = path / MANIFEST
    if not mf.exists():
        raise ModelLoadError(f"{path} is not a compiled model folder (no {MANIFEST})")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{mf}: not valid JSON ({e})") from None
    target = get_target(manifest["target"])
    lib = manifest.get("library")
    if lib and not (path / lib).exists():
        target.build(path, manifest)
    runner = target.load(path, manifest) if target.load else None
    return CompiledModel(path, manifest, runner)


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def specs(values: Sequence[tuple[str, tuple[int, ...], str]]) -> list[dict[str, Any]]:
    return [{"name": n, "shape": list(s), "dtype": d} for n, s, d in values]
