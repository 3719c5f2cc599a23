"""grid: the exhaustive search, in grid order (the last knob varies fastest). With a budget
below the space size it measures a prefix of the grid, which is why it is a baseline."""

from __future__ import annotations

from collections.abc import Mapping

from modelc.tune.space import Point
from modelc.tune.strategies.base import Strategy, register_strategy


@register_strategy
class GridSearch(Strategy):
    name = "grid"

    def propose(self, measured: Mapping[Point, float], n: int) -> list[Point]:
        return self.unmeasured(measured)[:n]
