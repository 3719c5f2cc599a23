"""What a tuning run maximizes: objectives, registered by name.

An objective folds a trial's score and metrics into one number to maximize, because search
strategies rank configurations by a scalar. Constrained objectives push infeasible trials far
below every feasible one (`INFEASIBLE` below zero, minus how far off they are), so the best
trial is feasible whenever any is, and among infeasible ones the nearest ranks first (a cost
model still learns the direction).

- `accuracy` (default): the score itself.
- `latency`: the fastest configuration whose loss against the float model is at most
  `max_loss` points: -latency_ms when feasible.
- `accuracy-within-latency`: the best score among configurations with latency_ms <=
  `max_latency_ms`.

"Loss" is always `float score - trial score`, in the hook's units (points of percent for the
built-in hooks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from modelc.errors import InputError

INFEASIBLE = -1.0e6  # far below any feasible score a hook reports


@dataclass(frozen=True)
class Goal:
    """An objective with its limits, and the float model's score to measure loss against."""

    name: str = "accuracy"
    max_loss: float | None = None
    max_latency_ms: float | None = None
    float_score: float = math.nan

    def value(self, score: float, metrics: Mapping[str, float]) -> float:
        if not math.isfinite(score):
            return -math.inf
        return OBJECTIVES[self.name].fn(self, score, metrics)

    def loss(self, score: float) -> float:
        return self.float_score - score

    def within_loss(self, score: float) -> bool:
        return self.max_loss is None or self.loss(score) <= self.max_loss + 1e-9

    def describe(self) -> dict[str, float | str | None]:
        return {"name": self.name, "max_loss": self.max_loss, "max_latency_ms": self.max_latency_ms}


@dataclass(frozen=True)
class Objective:
    name: str
    fn: Callable[[Goal, float, Mapping[str, float]], float]
    needs: tuple[str, ...]  # Goal fields that must be set
    help: str


def _accuracy(goal: Goal, score: float, metrics: Mapping[str, float]) -> float:
    return score


def _latency(goal: Goal, score: float, metrics: Mapping[str, float]) -> float:
    ms = float(metrics.get("latency_ms", math.inf))
    if goal.within_loss(score):
        return -ms
    assert goal.max_loss is not None
    return INFEASIBLE - (goal.loss(score) - goal.max_loss) - ms * 1e-6


def _accuracy_within_latency(goal: Goal, score: float, metrics: Mapping[str, float]) -> float:
    ms = float(metrics.get("latency_ms", math.inf))
    assert goal.max_latency_ms is not None
    if ms <= goal.max_latency_ms:
        return score
    return INFEASIBLE - (ms - goal.max_latency_ms) + score * 1e-6


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("accuracy", _accuracy, (), "the best score (accuracy, agreement, your hook's)"),
        Objective(
            "latency",
            _latency,
            ("max_loss",),
            "the fastest configuration within max_loss points of the float model",
        ),
        Objective(
            "accuracy-within-latency",
            _accuracy_within_latency,
            ("max_latency_ms",),
            "the best score with latency_ms <= max_latency_ms",
        ),
    )
}

_FLAGS = {
    "max_loss": "max_loss= (CLI --max-loss POINTS)",
    "max_latency_ms": "max_latency_ms= (CLI --max-latency-ms MS)",
}


def make_goal(
    name: str, max_loss: float | None = None, max_latency_ms: float | None = None
) -> Goal:
    """A checked Goal (the float score comes later, once the float model is measured)."""
    if name not in OBJECTIVES:
        raise InputError(
            f"unknown tuning objective {name!r}; known: {', '.join(sorted(OBJECTIVES))}"
        )
    goal = Goal(name, max_loss, max_latency_ms)
    for need in OBJECTIVES[name].needs:
        if getattr(goal, need) is None:
            raise InputError(f"objective {name!r} needs {_FLAGS[need]}")
    if max_loss is not None and max_loss < 0:
        raise InputError(f"max_loss must be >= 0 points, got {max_loss}")
    if max_latency_ms is not None and max_latency_ms <= 0:
        raise InputError(f"max_latency_ms must be > 0, got {max_latency_ms}")
    return goal
