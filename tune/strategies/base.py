"""The contract every search strategy keeps, and the strategy registry.

A strategy proposes points of a `Space` to measure; the tuner measures them (compile,
evaluate) and tells the strategy the scores through `measured`. Strategies never measure
anything themselves, so the same object drives a live tuning run, a replay against a table
of exhaustive measurements (bench/quantune.py), and a synthetic cost function in tests.

Scores are maximized (accuracy, or an objective that folds latency in). A failed trial is
reported as `-inf`, never left out: a strategy must not propose it again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from modelc.errors import InputError
from modelc.tune.space import Point, Space


@dataclass(frozen=True)
class PriorRecord:
    """One measured trial of another model, for transfer: that model's descriptors, the
    option labels of the configuration, and its score."""

    model: str
    descriptor: Mapping[str, float]
    labels: Mapping[str, str]
    score: float


class Strategy(ABC):
    """Base class: `propose(measured, n)` returns up to `n` distinct unmeasured points."""

    name: ClassVar[str] = ""

    def __init__(
        self,
        space: Space,
        *,
        seed: int = 0,
        descriptor: Mapping[str, float] | None = None,
        prior: Sequence[PriorRecord] = (),
    ) -> None:
        self.space = space
        self.seed = seed
        self.descriptor = dict(descriptor or {})
        self.prior = list(prior)

    @abstractmethod
    def propose(self, measured: Mapping[Point, float], n: int) -> list[Point]: ...

    def unmeasured(self, measured: Mapping[Point, float]) -> list[Point]:
        return [p for p in self.space.points() if p not in measured]


@dataclass
class _Registry:
    strategies: dict[str, type[Strategy]] = field(default_factory=dict)


_REGISTRY = _Registry()


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    if not cls.name or cls.name in _REGISTRY.strategies:
        raise ValueError(f"strategy {cls.__name__} needs a unique name, got {cls.name!r}")
    _REGISTRY.strategies[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    return sorted(_REGISTRY.strategies)


def get_strategy(name: str) -> type[Strategy]:
    try:
        return _REGISTRY.strategies[name]
    except KeyError:
        raise InputError(
            f"unknown tuning strategy {name!r}; known: {', '.join(strategy_names())}"
        ) from None
