"""The ONNX converter registry: (domain, op_type, since_version) -> converter function.

ONNX versions every op on its own: an op's schema changes at some opset (Softmax's axis semantics
at 13, Squeeze's axes from attribute to input at 13, ...), and a model that imports opset N uses,
for each op, the newest version whose `since_version` is <= N. The registry mirrors that: a
converter is registered under the first op version whose semantics it implements, and the lookup
for opset N picks the converter with the highest `since` <= N. A version that only widened the
type list needs no new converter.

The registry is filled once, when `modelc.frontend.onnx_ops` is imported (each family module
registers its converters at import); nothing changes it afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from modelc.frontend.onnx_ops.node import OnnxNode

# A converter gets the node's context and returns the modelc values of the ONNX node's outputs,
# in order; it may return fewer than the node declares when the trailing ones are optional
# outputs modelc does not produce (the driver makes sure nothing reads them).
ConverterFn = Callable[["OnnxNode"], Sequence[str]]
F = TypeVar("F", bound=ConverterFn)

DEFAULT_DOMAIN = ""


@dataclass(frozen=True)
class Converter:
    op_type: str
    since: int
    fn: ConverterFn
    domain: str = DEFAULT_DOMAIN


_REGISTRY: dict[tuple[str, str], list[Converter]] = {}


def register_converter(
    op_type: str, since: int, fn: ConverterFn, *, domain: str = DEFAULT_DOMAIN
) -> None:
    """Register `fn` for `op_type` from op version `since` on (table-driven families use this)."""
    entries = _REGISTRY.setdefault((domain, op_type), [])
    if any(c.since == since for c in entries):
        raise ValueError(f"converter for {op_type}-{since} (domain {domain!r}) registered twice")
    entries.append(Converter(op_type, since, fn, domain))
    entries.sort(key=lambda c: c.since)


def converter(op_type: str, *, since: int, domain: str = DEFAULT_DOMAIN) -> Callable[[F], F]:
    """Decorator form: `@converter("Conv", since=1)`."""

    def register(fn: F) -> F:
        register_converter(op_type, since, fn, domain=domain)
        return fn

    return register


def lookup(op_type: str, opset: int, domain: str = DEFAULT_DOMAIN) -> Converter | None:
    """The converter for `op_type` in a model importing `opset`: highest `since` <= opset."""
    _load_converters()
    best = None
    for c in _REGISTRY.get((domain, op_type), ()):
        if c.since <= opset:
            best = c
    return best


def supported_ops(domain: str = DEFAULT_DOMAIN) -> Mapping[str, tuple[int, ...]]:
    """op_type -> the op versions a converter is registered for, sorted by op_type."""
    _load_converters()
    return {
        op: tuple(c.since for c in entries)
        for (dom, op), entries in sorted(_REGISTRY.items())
        if dom == domain
    }


def _load_converters() -> None:
    # Importing the package registers every converter (each family module does so at import).
    import modelc.frontend.onnx_ops  # noqa: F401
