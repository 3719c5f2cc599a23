"""Search strategies against synthetic cost functions: the Strategy contract (distinct,
unmeasured, seeded proposals; failed trials), and what transfer and exploration buy."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest

from modelc.errors import InputError
from modelc.tune.simulate import (
    prior_from_table,
    replay,
    synthetic_descriptor,
    synthetic_table,
    trials_to_reach,
)
from modelc.tune.space import EXTENDED, QUANTUNE
from modelc.tune.strategies import PriorRecord, get_strategy, strategy_names
from modelc.tune.strategies.xgb import PriorTrials, XGBoostTuner, normalize

STRATEGIES = ["random", "grid", "genetic", "xgb", "greedy"]
SHIFTS = (-1.0, -0.4, 0.1, 0.6, 1.0)


def geomean(values: list[int]) -> float:
    return math.exp(float(np.mean(np.log(values))))


def zoo(shifts=SHIFTS, base: int = 0):
    """Synthetic models: (name, exhaustive table, descriptor)."""
    return [
        (f"m{base + i}", synthetic_table(QUANTUNE, base + i, s), synthetic_descriptor(s, base + i))
        for i, s in enumerate(shifts)
    ]


def prior_of(models) -> list[PriorRecord]:
    return [r for name, t, d in models for r in prior_from_table(name, QUANTUNE, t, d)]


def test_registered() -> None:
    assert set(STRATEGIES) <= set(strategy_names())


# ---- the contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STRATEGIES)
def test_visits_every_point_once_and_finds_the_optimum(name: str) -> None:
    table = synthetic_table(QUANTUNE, 5, 0.3)
    trials = replay(name, QUANTUNE, table, seed=2)  # replay raises on a repeated proposal
    assert sorted(p for p, _ in trials) == QUANTUNE.points()
    assert trials_to_reach(name, QUANTUNE, table, target=max(table.values())) <= QUANTUNE.size()


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("batch", [3, 7])
def test_batches_are_distinct_and_new(name: str, batch: int) -> None:
    table = synthetic_table(QUANTUNE, 1, -0.5)
    trials = replay(name, QUANTUNE, table, batch=batch, seed=1, budget=30)
    assert len({p for p, _ in trials}) == len(trials) == 30
    strategy = get_strategy(name)(QUANTUNE, seed=0)
    measured = dict(trials)
    rest = strategy.propose(measured, 100)
    assert sorted(rest) == sorted(set(QUANTUNE.points()) - set(measured))
    assert strategy.propose({p: 0.5 for p in QUANTUNE.points()}, 4) == []


@pytest.mark.parametrize("name", STRATEGIES)
def test_failed_trials(name: str) -> None:
    table = synthetic_table(QUANTUNE, 2, 0.0, failures=12)
    trials = replay(name, QUANTUNE, table, seed=3)
    assert sorted(p for p, _ in trials) == QUANTUNE.points()
    # Every trial failed so far: still new points, and the search goes on.
    strategy = get_strategy(name)(QUANTUNE, seed=0)
    failed = {p: -math.inf for p in QUANTUNE.points()[:6]}
    proposed = strategy.propose(failed, 5)
    assert len(set(proposed)) == 5 and not set(proposed) & set(failed)


@pytest.mark.parametrize("name", ["random", "genetic", "xgb"])
def test_deterministic_for_a_seed(name: str) -> None:
    table = synthetic_table(QUANTUNE, 4, 0.2)
    a = replay(name, QUANTUNE, table, seed=7, budget=20)
    assert a == replay(name, QUANTUNE, table, seed=7, budget=20)
    assert a != replay(name, QUANTUNE, table, seed=8, budget=20)


def test_xgb_needs_xgboost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost now raises ImportError
    with pytest.raises(InputError, match=r"pip install 'modelc\[tune\]'"):
        get_strategy("xgb")(QUANTUNE)
    get_strategy("genetic")(QUANTUNE)  # the others do not


# ---- the cost model's pieces --------------------------------------------------------------------


def test_normalize_ranks_per_model() -> None:
    assert normalize([0.5, -math.inf, 0.7, 0.5]).tolist() == [0.25, -0.25, 1.0, 0.25]
    assert normalize([0.3]).tolist() == [1.0]
    assert normalize([-math.inf]).tolist() == [-0.25]


def test_prior_from_another_space_keeps_what_this_space_can_express() -> None:
    ext = synthetic_table(EXTENDED, 0, 0.0)
    records = prior_from_table("other", EXTENDED, ext, {"x": 1.0})
    trials = PriorTrials.encode(QUANTUNE, records, ["x"])
    # EXTENDED's clipping=percentile / mse have no QUANTUNE point; bias_correction is extra.
    assert len(trials.y) == 2 * QUANTUNE.size()
    assert len(trials.by_point[0]) == QUANTUNE.size()
    # Nothing this space can use: the cold start is the same as without a prior.
    useless = [r for r in records if r.labels["clipping"] == "mse"]
    plain = XGBoostTuner(QUANTUNE, seed=1).propose({}, 3)
    assert XGBoostTuner(QUANTUNE, seed=1, prior=useless).propose({}, 3) == plain


def test_trust_drops_for_a_model_that_ranks_the_other_way() -> None:
    points = QUANTUNE.points()[:6]
    agree = {p: float(i) for i, p in enumerate(points)}
    records = [PriorRecord("same", {}, QUANTUNE.labels(p), v) for p, v in agree.items()]
    records += [PriorRecord("reverse", {}, QUANTUNE.labels(p), -v) for p, v in agree.items()]
    trials = PriorTrials.encode(QUANTUNE, records, [])
    assert trials.trust({}, 4.0).tolist() == [1.0, 1.0]  # no evidence yet
    own = dict(zip(points, normalize(list(agree.values()))))
    same, reverse = trials.trust(own, 4.0)
    assert same > 1.0 and reverse == 0.0


def test_exploration_grows_while_the_best_stalls() -> None:
    xgb, greedy = XGBoostTuner(QUANTUNE), get_strategy("greedy")(QUANTUNE)
    points = QUANTUNE.points()
    improving = {p: float(i) for i, p in enumerate(points[:5])}
    stalled = {p: -float(i) for i, p in enumerate(points[:5])}
    assert xgb.epsilon_now(improving) == 0.0
    assert xgb.epsilon_now(stalled) == pytest.approx(xgb.epsilon / 2)  # 4 trials = half-life
    assert greedy.epsilon_now(stalled) == 0.0


# ---- what transfer and exploration buy ----------------------------------------------------------


def test_transfer_beats_random_search() -> None:
    """xgb warm-started from the four other synthetic models of a zoo vs random search, over
    5 seeds, every model of two zoos."""
    counts: dict[str, list[int]] = {"xgb": [], "random": []}
    for base, i in itertools.product((0, 10), range(len(SHIFTS))):
        models = zoo(base=base)
        _, table, descriptor = models[i]
        prior = prior_of(models[:i] + models[i + 1 :])
        for name, runs in counts.items():
            for seed in range(5):
                runs.append(
                    trials_to_reach(
                        name,
                        QUANTUNE,
                        table,
                        target=max(table.values()),
                        seed=seed,
                        descriptor=descriptor,
                        prior=prior,
                    )
                )
    xgb, rnd = geomean(counts["xgb"]), geomean(counts["random"])
    print(f"trials to the best, geomean: xgb {xgb:.2f}, random {rnd:.2f} ({rnd / xgb:.1f}x)")
    assert rnd >= 3 * xgb


def test_exploration_escapes_a_misleading_prior() -> None:
    """Every prior model is bad with symmetric uint8 scales; this model is best with them.
    Greedy trusts the prior and measures the other schemes first; xgb's exploration tries
    the unmeasured scheme once the best stops improving."""
    space = QUANTUNE

    def shift_uint8(table, delta):
        uint8 = {p for p in table if space.labels(p)["scheme"] == "symmetric_uint8"}
        return {p: v + delta if p in uint8 else v for p, v in table.items()}

    counts: dict[str, list[int]] = {"xgb": [], "greedy": []}
    for base in (0, 10):
        models = [
            (name, shift_uint8(t, -0.3), d) for name, t, d in zoo((-1.0, -0.4, 0.6, 1.0), base)
        ]
        table = shift_uint8(synthetic_table(space, base + 99, 0.1), 0.1)
        descriptor = synthetic_descriptor(0.1, base + 99)
        for name, runs in counts.items():
            for seed in range(3):
                runs.append(
                    trials_to_reach(
                        name,
                        space,
                        table,
                        target=max(table.values()),
                        seed=seed,
                        descriptor=descriptor,
                        prior=prior_of(models),
                        budget=30,
                    )
                )
    xgb, greedy = geomean(counts["xgb"]), geomean(counts["greedy"])
    print(f"misleading prior, trials to the best, geomean: xgb {xgb:.2f}, greedy {greedy:.2f}")
    assert xgb <= greedy
