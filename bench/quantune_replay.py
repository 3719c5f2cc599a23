"""Strategy comparison of the Quantune benchmark: replay every search strategy against the
exhaustive tables, as Quantune compares its tuner with random, grid and genetic search.

For one model, one strategy and one seed the replay (`modelc.tune.simulate.replay`, the same
propose / measure loop a live run drives) looks scores up in the model's table instead of
compiling. It counts the measurements up to the first configuration within `TOLERANCE` points
of the exhaustive best, and prices them: the sum of the trial seconds the table recorded for
those configurations (compile + evaluation, as the live run would spend them) plus the
strategy's own proposing time measured in the replay (the cost model's refits, for xgb).

Transfer (`xgb+transfer`, `greedy+transfer`): the prior is every successful trial of the OTHER
zoo models' tables over the same space (leave-one-out), each with that model's descriptors;
the tuned model gets its own descriptors. Plain `xgb` and `greedy` start cold.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from quantune_measure import Table

from modelc.tune.simulate import prior_from_table, replay
from modelc.tune.space import get_space
from modelc.tune.strategies import PriorRecord, strategy_names

TOLERANCE = 0.1  # points of top-1: "reached" = within 0.1 of the exhaustive best
SMALL_BUDGET = 10  # the fixed budget of the "loss after N trials" column
STRATEGIES = ("xgb+transfer", "greedy+transfer", "xgb", "greedy", "random", "grid", "genetic")


@dataclass(frozen=True)
class Run:
    """One replay of one strategy on one model with one seed."""

    model: str
    strategy: str
    seed: int
    trials: int  # measurements up to and including the first within TOLERANCE (size + 1: never)
    reached: bool
    trial_seconds: float  # recorded seconds of the configurations measured until then
    propose_seconds: float  # the strategy's own time in the replay
    best_small: float  # best top-1 among the first SMALL_BUDGET measurements

    @property
    def seconds(self) -> float:
        return self.trial_seconds + self.propose_seconds


def available(strategies: tuple[str, ...] = STRATEGIES) -> list[str]:
    """The strategies of `strategies` that the registry has (others are still being written)."""
    known = set(strategy_names())
    return [s for s in strategies if s.split("+")[0] in known]


def prior_for(model: str, tables: dict[str, Table]) -> list[PriorRecord]:
    """Every successful trial of the other models' tables (leave-one-out transfer)."""
    out: list[PriorRecord] = []
    for other, t in tables.items():
        if other != model:
            space = get_space(t.space)
            out += prior_from_table(other, space, t.ok(), t.descriptor)
    return out


def run_one(
    model: str,
    strategy: str,
    seed: int,
    tables: dict[str, Table],
    prior: list[PriorRecord],
    tolerance: float = TOLERANCE,
) -> Run:
    table = tables[model]
    space = get_space(table.space)
    name, _, transfer = strategy.partition("+")
    kwargs = {
        "seed": seed,
        "descriptor": table.descriptor,
        "prior": prior if transfer else (),
    }
    target = table.best - tolerance - 1e-9
    t0 = time.perf_counter()
    trials = replay(name, space, table.top1, stop_at=target, **kwargs)
    propose = time.perf_counter() - t0
    reached = bool(trials) and trials[-1][1] >= target
    first = (
        trials
        if len(trials) >= SMALL_BUDGET
        else replay(name, space, table.top1, budget=SMALL_BUDGET, **kwargs)
    )
    return Run(
        model,
        strategy,
        seed,
        len(trials) if reached else space.size() + 1,
        reached,
        sum(table.seconds.get(p, 0.0) for p, _ in trials),
        propose,
        max(s for _, s in first[:SMALL_BUDGET]),
    )


def compare(
    tables: dict[str, Table],
    seeds: int,
    strategies: list[str] | None = None,
    log=print,
    tolerance: float = TOLERANCE,
) -> list[Run]:
    """Every (model, strategy, seed) replay. `tables`: model -> its table over one space;
    "reached" = within `tolerance` points of the exhaustive best."""
    runs: list[Run] = []
    strategies = strategies or available()
    for model in tables:
        prior = prior_for(model, tables)
        for strategy in strategies:
            for seed in range(1 if strategy == "grid" else seeds):  # grid ignores the seed
                runs.append(run_one(model, strategy, seed, tables, prior, tolerance))
        log(f"replayed {model}: {len(strategies)} strategies x {seeds} seeds (tol {tolerance})")
    return runs


def geomean(values: list[float]) -> float:
    return float(math.exp(np.mean(np.log(values)))) if values else math.nan


def ratio(
    runs: list[Run], base: str, strategy: str, model: str | None = None, what: str = "trials"
) -> float:
    """Geometric mean of `base`'s `what` (trials, or seconds) over that of `strategy`, over
    models and seeds (one model with `model`): how many times fewer measurements (or how much
    less wall time) `strategy` needs."""

    def pick(s: str) -> list[float]:
        return [getattr(r, what) for r in runs if r.strategy == s and model in (None, r.model)]

    a, b = pick(base), pick(strategy)
    return geomean(a) / geomean(b) if a and b else math.nan
