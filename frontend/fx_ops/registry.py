"""The fx converter registry: ATen op overload name -> converter function.

torch.export names every op by its overload, `aten.add.Tensor`, `aten.add.Scalar`, ...; each
overload has one fixed schema, so a converter registers under the overload names whose schema it
reads (`@converter("aten.add.Tensor", "aten.add.Scalar")`) and the lookup is exact. A name that
is missing here is an op modelc does not compile; `supported_ops()` is what the docs list and
what `frontend/fx.py` keeps out of torch's decompositions (an op with a converter is converted
as written, an op without one is decomposed by torch first, into ops that mostly have one).

The registry is filled once, when `modelc.frontend.fx_ops` is imported; nothing changes it later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from modelc.frontend.fx_ops.node import FxNode

# A converter returns the modelc value of the node's output, or a sequence of them for ops with
# several outputs (`operator.getitem` nodes pick from it), or None for ops that compute nothing
# (run-time asserts).
ConverterFn = Callable[["FxNode"], Any]
F = TypeVar("F", bound=ConverterFn)

_REGISTRY: dict[str, ConverterFn] = {}


def register_converter(names: Sequence[str], fn: ConverterFn) -> None:
    for name in names:
        if name in _REGISTRY:
            raise ValueError(f"fx converter for {name} registered twice")
        _REGISTRY[name] = fn


def converter(*names: str) -> Callable[[F], F]:
    """Decorator: `@converter("aten.relu.default")`."""

    def register(fn: F) -> F:
        register_converter(names, fn)
        return fn

    return register


def lookup(name: str) -> ConverterFn | None:
    _load_converters()
    return _REGISTRY.get(name)


def supported_ops() -> tuple[str, ...]:
    """Every ATen overload with a converter, sorted."""
    _load_converters()
    return tuple(sorted(_REGISTRY))


def _load_converters() -> None:
    import modelc.frontend.fx_ops  # noqa: F401
