"""Node attributes: an immutable, hashable, ordered mapping.

Attribute values are ints, floats, strings, bools, DTypes, graphs, or (nested) tuples of those;
lists are turned into tuples on the way in so nodes stay hashable and compare structurally. A
`Graph` value is the body of a region op (the `fused` op keeps its fused group as one): graphs are
immutable and hash structurally, so they are attribute values like any other.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from modelc.ir.dtypes import DType

AttrValue = Any  # int | float | str | bool | DType | Graph | tuple[AttrValue, ...]


def freeze(value: Any) -> AttrValue:
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (bool, int, float, str, DType)) or value is None:
        return value
    # numpy scalars and 0-d arrays
    if hasattr(value, "tolist"):
        return freeze(value.tolist())
    from modelc.ir.graph import Graph  # attrs.py is imported by graph.py: import late

    if isinstance(value, Graph):
        return value
    raise TypeError(f"attribute value {value!r} of type {type(value).__name__} is not supported")


class Attrs(Mapping[str, AttrValue]):
    __slots__ = ("_items", "_hash")

    def __init__(self, items: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        merged = dict(items or {})
        merged.update(kwargs)
        self._items: tuple[tuple[str, AttrValue], ...] = tuple(
            (k, freeze(merged[k])) for k in sorted(merged)
        )
        self._hash = hash(self._items)

    def __getitem__(self, key: str) -> AttrValue:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attrs):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Attrs({dict(self._items)!r})"

    def replace(self, **changes: Any) -> Attrs:
        merged = dict(self._items)
        merged.update(changes)
        return Attrs(merged)
