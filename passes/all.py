"""Importing this module registers every pass (one module per pass)."""

from modelc.passes import (  # noqa: F401
    canonicalize,
    eliminate_dead_code,
    fold_batchnorm,
    fold_constants,
    fold_qdq,
    fuse_elementwise,
    fuse_epilogue,
    fuse_patterns,
    layout,
    lower_to_loops,
    plan_memory,
    quantize,
    reorder_for_memory,
)
