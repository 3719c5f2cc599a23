"""genetic: a steady-state genetic algorithm over the knobs (one of Quantune's baselines).

The population is the best `population` configurations measured so far (elitist: a good
configuration is never lost to a bad generation). A child takes each knob from one of two
parents chosen by tournament, then each knob mutates to another option with probability
`mutation`. The first `population` trials are random, like a GA's initial population.

Why steady-state and not generational: the tuner measures a few points per round, and a
generation of a fixed size would either wait for points that are never proposed or
re-measure a parent, which a strategy must not do. Children that were measured already, or
are already in the batch, are bred again a few times and then replaced by random unmeasured
points, so every proposal is new.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from modelc.tune.space import Point
from modelc.tune.strategies.base import Strategy, register_strategy


@register_strategy
class GeneticSearch(Strategy):
    name = "genetic"

    population: ClassVar[int] = 8
    tournament: ClassVar[int] = 3  # parents are the best of this many members drawn at random
    mutation: ClassVar[float] = 0.2  # per knob
    attempts: ClassVar[int] = 20  # breeding tries per child before a random point stands in

    def propose(self, measured: Mapping[Point, float], n: int) -> list[Point]:
        # The generator depends on the history length, so a resumed run draws the same points.
        rng = np.random.default_rng([self.seed, len(measured)])
        if len(measured) < self.population:  # the initial population
            return self._random_order(rng, measured)[:n]
        out: list[Point] = []
        members = sorted(measured, key=lambda p: measured[p], reverse=True)[: self.population]
        scores = np.array([measured[p] for p in members])
        taken = set(measured)
        for _ in range(n):
            child = self._breed(rng, members, scores, taken)
            if child is None:
                rest = [p for p in self._random_order(rng, measured) if p not in taken]
                if not rest:
                    break
                child = rest[0]
            out.append(child)
            taken.add(child)
        return out

    def _breed(
        self, rng: np.random.Generator, members: list[Point], scores: np.ndarray, taken: set[Point]
    ) -> Point | None:
        sizes = [len(k.options) for k in self.space.knobs]
        for _ in range(self.attempts):
            a, b = (members[self._select(rng, scores)] for _ in range(2))
            genes = [a[i] if rng.random() < 0.5 else b[i] for i in range(len(sizes))]
            for i, size in enumerate(sizes):
                if size > 1 and rng.random() < self.mutation:
                    genes[i] = int((genes[i] + rng.integers(1, size)) % size)
            child = tuple(int(g) for g in genes)
            if child not in taken:
                return child
        return None

    def _select(self, rng: np.random.Generator, scores: np.ndarray) -> int:
        entrants = rng.choice(len(scores), size=min(self.tournament, len(scores)), replace=False)
        return int(entrants[np.argmax(scores[entrants])])

    def _random_order(
        self, rng: np.random.Generator, measured: Mapping[Point, float]
    ) -> list[Point]:
        points = self.unmeasured(measured)
        return [points[i] for i in rng.permutation(len(points))]
