"""Importing this module registers every pass (one module per pass)."""

from modelc.passes import (  # noqa: F401
    eliminate_dead_code,
    fold_constants,
    lower_to_loops,
    plan_memory,
)
