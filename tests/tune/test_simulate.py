"""Replays against measurement tables, and the synthetic tables the strategy tests run on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelc.tune.simulate import (
    prior_from_table,
    replay,
    synthetic_descriptor,
    synthetic_table,
    trials_to_reach,
)
from modelc.tune.space import EXTENDED, QUANTUNE, W4A8
from modelc.tune.strategies import Strategy, base


def test_replay_looks_scores_up_in_proposal_order() -> None:
    table = synthetic_table(QUANTUNE, 0, 0.0)
    trials = replay("grid", QUANTUNE, table, budget=5)
    assert [p for p, _ in trials] == QUANTUNE.points()[:5]
    assert [s for _, s in trials] == [table[p] for p in QUANTUNE.points()[:5]]
    assert len(replay("random", QUANTUNE, table, batch=7)) == QUANTUNE.size()
    assert len(replay("random", QUANTUNE, table, budget=1000)) == QUANTUNE.size()


def test_missing_points_are_failed_trials() -> None:
    table = {QUANTUNE.points()[0]: 0.5}
    trials = replay("grid", QUANTUNE, table, budget=3)
    assert [s for _, s in trials] == [0.5, -math.inf, -math.inf]


def test_trials_to_reach_counts_measurements() -> None:
    points = QUANTUNE.points()
    table = {p: 0.1 for p in points}
    table[points[9]] = 0.9
    assert trials_to_reach("grid", QUANTUNE, table, target=0.9) == 10
    assert trials_to_reach("grid", QUANTUNE, table, target=0.9, batch=4) == 10  # not 12
    assert trials_to_reach("grid", QUANTUNE, table, target=0.9, budget=5) == 6
    assert trials_to_reach("grid", QUANTUNE, table, target=1.0) == QUANTUNE.size() + 1
    assert trials_to_reach("grid", QUANTUNE, table, target=0.0) == 1


def test_replay_rejects_a_strategy_that_proposes_again(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stubborn(Strategy):
        name = "stubborn"

        def propose(self, measured, n):
            return [self.space.points()[0]]

    monkeypatch.setitem(base._REGISTRY.strategies, "stubborn", Stubborn)
    with pytest.raises(AssertionError, match="proposed measured points again"):
        replay("stubborn", QUANTUNE, synthetic_table(QUANTUNE, 0, 0.0))


@pytest.mark.parametrize("space", [QUANTUNE, EXTENDED, W4A8], ids=lambda s: s.name)
def test_synthetic_tables_are_structured_but_not_additive(space) -> None:
    a = synthetic_table(space, 3, 0.5)
    assert a == synthetic_table(space, 3, 0.5)
    assert set(a) == set(space.points())
    v = np.array([a[p] for p in space.points()])
    assert v.min() > 0.6 and v.max() < 0.93
    # Near-ties at the top, as in measured tables: the runner-up is within a point.
    top = np.sort(v)[::-1]
    assert top[0] - top[1] < 0.01
    # Interactions: an additive (one-hot least squares) fit leaves real residuals.
    x = np.stack([space.encode(p) for p in space.points()])
    fit = x @ np.linalg.lstsq(x, v, rcond=None)[0]
    r2 = 1 - np.sum((v - fit) ** 2) / np.sum((v - v.mean()) ** 2)
    assert 0.5 < r2 < 0.97


def test_synthetic_models_differ_and_share_structure() -> None:
    tables = [synthetic_table(QUANTUNE, i, s) for i, s in enumerate((-1.0, -0.4, 0.1, 0.6, 1.0))]
    bests = {max(t, key=t.get) for t in tables}
    assert len(bests) >= 2  # the best configuration depends on the model
    pts = QUANTUNE.points()
    corr = np.corrcoef([[t[p] for p in pts] for t in tables])
    assert np.mean(corr[np.triu_indices(5, 1)]) > 0.3  # but there is something to transfer


def test_failures_and_descriptors() -> None:
    t = synthetic_table(QUANTUNE, 1, 0.0, failures=5)
    assert sum(1 for v in t.values() if v == -math.inf) == 5
    d = synthetic_descriptor(0.3, 1)
    assert list(d) == sorted(d) and all(math.isfinite(v) for v in d.values())
    records = prior_from_table("m", QUANTUNE, t, d)
    assert len(records) == QUANTUNE.size()
    assert {QUANTUNE.point(r.labels): r.score for r in records} == t
