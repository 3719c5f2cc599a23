"""Search strategies of the quantization tuner, registered by name (see base.py).

Importing this package registers every strategy; each lives in its own module.
"""

from modelc.tune.strategies import genetic, grid, random_search, xgb  # noqa: F401  (registration)
from modelc.tune.strategies.base import (
    PriorRecord,
    Strategy,
    get_strategy,
    register_strategy,
    strategy_names,
)

__all__ = ["PriorRecord", "Strategy", "get_strategy", "register_strategy", "strategy_names"]
