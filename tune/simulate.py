"""Replaying search strategies against tables of measurements, and synthetic tables for tests.

A strategy only proposes points and reads back scores (tune/strategies/base.py), so it can be
judged without compiling anything: measure every configuration of a model once (an exhaustive
table), then replay each strategy against the table and count the measurements it needs to
reach the best score. That is how Quantune compares its tuner with random, grid and genetic
search, how bench/quantune.py compares ours, and how the tests check the strategies in
milliseconds.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from modelc.tune.space import Point, Space
from modelc.tune.strategies import PriorRecord, get_strategy


def replay(
    strategy_name: str,
    space: Space,
    table: Mapping[Point, float],
    *,
    budget: int | None = None,
    seed: int = 0,
    descriptor: Mapping[str, float] | None = None,
    prior: Sequence[PriorRecord] = (),
    batch: int = 1,
    stop_at: float | None = None,
) -> list[tuple[Point, float]]:
    """The (point, score) trials of one strategy run, in the order it proposed them.

    Each round the strategy proposes up to `batch` points, which are "measured" by looking
    them up in `table` (a point the table lacks counts as a failed trial, -inf). The run ends
    after `budget` trials (default: the whole space), when the strategy has nothing left to
    propose, or, with `stop_at`, after the first trial scoring >= `stop_at`. A strategy that
    proposes a point twice raises AssertionError: that is a bug in the strategy.
    """
    budget = space.size() if budget is None else min(budget, space.size())
    strategy = get_strategy(strategy_name)(space, seed=seed, descriptor=descriptor, prior=prior)
    measured: dict[Point, float] = {}
    trials: list[tuple[Point, float]] = []
    while len(trials) < budget:
        proposed = strategy.propose(dict(measured), min(batch, budget - len(trials)))
        if not proposed:
            break
        _check_proposal(strategy_name, proposed, measured)
        for p in proposed:
            score = float(table.get(p, -math.inf))
            measured[p] = score
            trials.append((p, score))
            if stop_at is not None and score >= stop_at:
                return trials
    return trials


def trials_to_reach(
    strategy_name: str,
    space: Space,
    table: Mapping[Point, float],
    *,
    target: float,
    budget: int | None = None,
    seed: int = 0,
    descriptor: Mapping[str, float] | None = None,
    prior: Sequence[PriorRecord] = (),
    batch: int = 1,
) -> int:
    """How many measurements the strategy makes up to and including the first one scoring
    >= `target`; budget + 1 (the space size + 1 without a budget) if it never does.

    With `batch` > 1 the count is the position of that trial in proposal order, as a runner
    that measures each batch in order would spend it.
    """
    limit = space.size() if budget is None else min(budget, space.size())
    trials = replay(
        strategy_name,
        space,
        table,
        budget=limit,
        seed=seed,
        descriptor=descriptor,
        prior=prior,
        batch=batch,
        stop_at=target,
    )
    for i, (_, score) in enumerate(trials):
        if score >= target:
            return i + 1
    return limit + 1


def prior_from_table(
    model: str, space: Space, table: Mapping[Point, float], descriptor: Mapping[str, float]
) -> list[PriorRecord]:
    """Every trial of a table as prior records of `model` (what a tuning log of that model
    would hold after an exhaustive run)."""
    d = dict(descriptor)
    return [PriorRecord(model, d, space.labels(p), float(s)) for p, s in table.items()]


def _check_proposal(name: str, proposed: list[Point], measured: Mapping[Point, float]) -> None:
    if len(set(proposed)) != len(proposed):
        raise AssertionError(f"strategy {name} proposed a point twice in one batch: {proposed}")
    again = [p for p in proposed if p in measured]
    if again:
        raise AssertionError(f"strategy {name} proposed measured points again: {again}")


# ---- synthetic cost functions -----------------------------------------------------------------

# Scale of each kind of term; the shared per-option effects dominate (they are what transfers
# from model to model), the model's sensitivity (a function of its descriptor) is next, then
# knob-pair interactions, then what is peculiar to one model and not predictable at all.
_SHARED, _SENSITIVITY, _INTERACTION, _NOISE = 1.0, 0.8, 0.45, 0.08
_IDIOSYNCRATIC, _IDIOSYNCRATIC_PAIR = 0.5, 0.3
_OFFSET = 1.0  # centres the typical configuration on the steep part of the accuracy curve

# What is known about the options, on top of the random effects: (shared, sensitivity) of
# single options and the effect of option pairs. Per-channel scales help, more so for
# sensitive (depthwise-heavy) models; one calibration sample hurts; power-of-two scales cost
# a little, a lot per tensor; KL clipping helps unless it has one sample to build histograms.
_KNOWN_OPTION = {
    ("granularity", "per_channel"): (0.6, 0.9),
    ("granularity", "per_tensor"): (-0.3, -0.9),
    ("calibration", "1"): (-0.9, -0.3),
    ("scheme", "symmetric_pow2"): (-0.4, -0.2),
    ("clipping", "kl"): (0.3, 0.2),
    ("clipping", "percentile"): (0.2, 0.3),
}
_KNOWN_PAIR = {
    (("clipping", "kl"), ("calibration", "1")): -1.2,
    (("scheme", "symmetric_pow2"), ("granularity", "per_tensor")): -0.7,
    (("scheme", "symmetric_uint8"), ("clipping", "max")): -0.4,
}


def synthetic_table(
    space: Space, seed: int, model_shift: float, *, failures: int = 0
) -> dict[Point, float]:
    """An exhaustive table of accuracy-like scores in (0.62, 0.92) for a made-up model.

    The cost is built the way quantization results behave across models: every option has an
    effect shared by all models (per-channel beats per-tensor, one calibration sample is bad),
    scaled by how sensitive the model is (`model_shift`, which `synthetic_descriptor` exposes
    the way a depthwise share would); knob pairs interact (KL clipping needs a large
    calibration set, power-of-two scales hurt most per tensor); `seed` adds effects peculiar
    to this model that no descriptor predicts. A saturating map to accuracy and rounding to an
    evaluation set of 1,000 samples crowd the top with near-ties and exact ties, as measured
    tables are. `failures` random points fail (-inf).

    Effects are keyed by `knob=label`, so two spaces that share options agree on them.
    """
    rng = np.random.default_rng([seed, 7919])
    knobs = space.knobs
    tag = f"model{seed}"
    table: dict[Point, float] = {}
    for p in space.points():
        chosen = [(k.name, k.options[i].label) for k, i in zip(knobs, p)]
        u = 0.0
        for j, (name, label) in enumerate(chosen):
            weight = 1.0 / (1.0 + 0.5 * j)  # earlier knobs matter more
            shared, sensitivity = _KNOWN_OPTION.get((name, label), (0.0, 0.0))
            u += weight * (
                _SHARED * (_normal("shared", name, label) + shared)
                + model_shift * _SENSITIVITY * (_normal("sensitivity", name, label) + sensitivity)
            )
            u += _IDIOSYNCRATIC * _normal(tag, name, label)
            for name2, label2 in chosen[j + 1 :]:
                u += _INTERACTION * _normal("pair", name, label, name2, label2)
                u += _IDIOSYNCRATIC_PAIR * _normal(tag, name, label, name2, label2)
                pair = ((name, label), (name2, label2))
                u += _KNOWN_PAIR.get(pair, _KNOWN_PAIR.get(pair[::-1], 0.0))
        u = u * math.sqrt(4.0 / max(len(knobs), 1)) + _NOISE * rng.standard_normal()
        accuracy = 0.62 + 0.3 / (1.0 + math.exp(-1.4 * (u + _OFFSET)))
        table[p] = round(accuracy, 3)
    points = space.points()
    for i in rng.choice(len(points), size=min(failures, len(points)), replace=False):
        table[points[int(i)]] = -math.inf
    return table


def synthetic_descriptor(model_shift: float, seed: int) -> dict[str, float]:
    """Descriptors of a synthetic model: its sensitivity, seen through two noisy proxies the
    way real descriptors see it (a depthwise share, a weight outlier ratio), and an unrelated
    size."""
    rng = np.random.default_rng([seed, 104729])
    return {
        "depthwise_share": float(np.clip(0.5 + 0.4 * model_shift, 0, 1))
        + 0.05 * float(rng.standard_normal()),
        "log10_params": 5.0 + float(rng.uniform(0, 2)),
        "weight_outlier": 6.0 + 3.0 * model_shift + 0.5 * float(rng.standard_normal()),
    }


def _normal(*key: str) -> float:
    """A standard normal number fixed by `key` (the same in every process and space)."""
    h = zlib.crc32("\x1f".join(key).encode())
    return float(np.random.default_rng(h).standard_normal())
