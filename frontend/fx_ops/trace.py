"""Tracing a module for the fx frontend: torch.export in eval mode, then torch's decompositions
minus the ops that have a converter (so those stay whole and everything else becomes core ATen).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator
from typing import Any

from modelc.errors import ModelLoadError
from modelc.frontend.fx_ops.registry import supported_ops


def decomposition_table() -> dict[Any, Any]:
    """torch's default decompositions minus the ops modelc converts as they are (a fresh dict:
    torch may edit the one it is given)."""
    return dict(_decomposition_table())


@functools.lru_cache(maxsize=1)
def _decomposition_table() -> dict[Any, Any]:
    """Built once: materializing torch's table takes a noticeable fraction of a second."""
    import torch

    table = torch.export.default_decompositions()
    keep = set(supported_ops())
    return {op: fn for op, fn in table.items() if str(op) not in keep}


def export_program(module: Any, args: tuple[Any, ...]) -> Any:
    """The module traced by torch.export in eval mode and decomposed for the converters."""
    import torch

    with _eval_mode(module), _quiet():
        try:
            program = torch.export.export(module, args, strict=False)
        except Exception as e:  # torch raises many kinds here; its message says what and where
            raise ModelLoadError(
                f"torch.export could not trace {type(module).__name__}: {_first_lines(e)}\n"
                "modelc compiles what torch.export can trace: static shapes, no data-dependent "
                "Python control flow (use torch.where / torch.cond instead)"
            ) from e
        return program.run_decompositions(decomposition_table())


@contextlib.contextmanager
def _eval_mode(module: Any) -> Iterator[None]:
    """Trace in eval mode and put every submodule's training flag back afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.export logs and warns about things users of modelc cannot act on."""
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _first_lines(e: BaseException, n: int = 12) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    text = "\n".join(lines[:n])
    return f"{type(e).__name__}: {text}" + ("\n..." if len(lines) > n else "")
