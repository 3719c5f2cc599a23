"""The target registry: each target is one record wiring a pipeline, a renderer, a toolchain
and a runner together. Code that needs target-specific behaviour reads the record (or its
capabilities); it never compares target names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelc.errors import TargetError


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    pipeline: str
    # emit(program, out_dir, options) -> manifest additions; writes sources, weights, build file.
    emit: Callable[..., dict[str, Any]]
    # build(out_dir, options) -> path of the built artifact (None where the toolchain is
    # absent); options are the compile options plus what emit returned (e.g. cflags).
    build: Callable[[Path, Mapping[str, Any]], Path | None]
    # load(out_dir, manifest) -> runner with run(list[np.ndarray]) -> list[np.ndarray].
    load: Callable[[Path, Mapping[str, Any]], Any] | None
    capabilities: Any = None
    tags: Mapping[str, Any] = field(default_factory=dict)


_TARGETS: dict[str, Target] = {}


def register_target(t: Target) -> Target:
    if t.name in _TARGETS:
        raise ValueError(f"target {t.name} registered twice")
    _TARGETS[t.name] = t
    return t


def all_targets() -> dict[str, Target]:
    _load()
    return dict(_TARGETS)


def get_target(name: str) -> Target:
    _load()
    try:
        return _TARGETS[name]
    except KeyError:
        known = ", ".join(sorted(_TARGETS))
        raise TargetError(f"unknown target {name!r}; available targets: {known}") from None


def _load() -> None:
    import modelc.targets.cpu  # noqa: F401
    import modelc.targets.cpu_int8  # noqa: F401
