"""Accuracy-aware per-layer float fallback, after the search (NNCF's accuracy-aware PTQ).

When even the best configuration loses more than `max_loss` points against the float model,
no choice of global knobs is good enough: a few layers do not survive int8. The quantize pass
reports each layer's output SQNR against the float model; the layer with the lowest SQNR is
the likeliest culprit, so it goes to `fallback` (it stays float) and the configuration is
measured again. One layer at a time, re-ranking with each new trial's report (a float layer
changes its successors' SQNR), until the loss is within budget or `steps` layers are float.

Each step is a trial of kind "fallback" in the log (same labels as the configuration it
refines). A resumed run finds steps already in the log and does not measure them again.
Fallback steps come on top of the search budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from modelc.tune.log import TuneLog
from modelc.tune.objective import Goal
from modelc.tune.trial import TrialResult, TrialSpec

DEFAULT_STEPS = 3


def needs_fallback(goal: Goal, best: TrialResult) -> bool:
    return goal.max_loss is not None and best.ok and not goal.within_loss(best.score)


def worst_layer(trial: TrialResult) -> str | None:
    """The quantized layer with the lowest output SQNR (ties: by name, for a stable order)."""
    left = [(sqnr, name) for name, sqnr in trial.layers_sqnr.items() if name not in trial.fallback]
    return min(left)[1] if left else None


def fallback_search(
    run: Callable[[TrialSpec], TrialResult],
    best: TrialResult,
    goal: Goal,
    log: TuneLog,
    space: str,
    steps: int = DEFAULT_STEPS,
    on_result: Callable[[TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Float layers of `best` one by one until within `goal.max_loss`; returns the new trials."""
    if steps <= 0 or not needs_fallback(goal, best):
        return []
    done = {_key(t.config): t for t in log.trials if t.kind == "fallback"}
    out: list[TrialResult] = []
    current = best
    for _ in range(steps):
        layer = worst_layer(current)
        if layer is None:
            break
        fields = {**current.config, "fallback": [*current.fallback, layer]}
        trial = done.get(_key(fields))
        if trial is None:
            spec = TrialSpec(log.next_index(), fields, best.point, dict(best.labels), "fallback")
            trial = run(spec)
            trial.objective = goal.value(trial.score, trial.metrics)
            log.append(trial, space)
            if on_result:
                on_result(trial)
        out.append(trial)
        if not trial.ok:
            break
        current = trial
        if goal.within_loss(trial.score):
            break
    return out


def _key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)
