"""random: a seeded random order of the whole space, without repeats (the baseline every
tuner is measured against)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelc.tune.space import Point
from modelc.tune.strategies.base import Strategy, register_strategy


@register_strategy
class RandomSearch(Strategy):
    name = "random"

    def propose(self, measured: Mapping[Point, float], n: int) -> list[Point]:
        # One fixed permutation per seed, so a resumed run continues the same order.
        points = self.space.points()
        order = np.random.default_rng(self.seed).permutation(len(points))
        return [points[i] for i in order if points[i] not in measured][:n]
