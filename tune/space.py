"""Search spaces of the quantization tuner: which `QuantConfig`s a search may try.

A space is a small list of knobs. Each knob has named options, and an option is a set of
`QuantConfig` fields (so one option may set several fields: Quantune's "symmetric with
power-of-two scales" is `scheme=symmetric, power_of_two=true`). A point of the space is one
option index per knob; the full grid is their cartesian product, in a fixed order.

Why options carry labels and not just field values: tuning logs name the options by label,
and the cost model's one-hot features are keyed by `knob=label`, so logs written for one
space can warm-start a search in another that shares knobs (transfer across models and
across space versions).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelc.errors import InputError
from modelc.passes.quantize import QuantConfig

Point = tuple[int, ...]  # one option index per knob


@dataclass(frozen=True)
class Option:
    """One choice of a knob: a label for logs and features, and the fields it sets."""

    label: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Knob:
    name: str
    options: tuple[Option, ...]

    def labels(self) -> tuple[str, ...]:
        return tuple(o.label for o in self.options)


def knob(name: str, **options: Mapping[str, Any]) -> Knob:
    """`knob("granularity", per_tensor={"per_channel": False}, per_channel={...})`."""
    return Knob(name, tuple(Option(label, dict(f)) for label, f in options.items()))


@dataclass(frozen=True)
class Space:
    """A grid of quantization configurations: `base` fields, then one option per knob."""

    name: str
    knobs: tuple[Knob, ...]
    base: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    # ---- enumeration --------------------------------------------------------------------------

    def size(self) -> int:
        return int(np.prod([len(k.options) for k in self.knobs]))

    def points(self) -> list[Point]:
        """Every point, in grid order (the last knob varies fastest)."""
        return list(itertools.product(*(range(len(k.options)) for k in self.knobs)))

    def __iter__(self) -> Iterator[Point]:
        return iter(self.points())

    # ---- naming -------------------------------------------------------------------------------

    def labels(self, p: Point) -> dict[str, str]:
        """{knob name: option label} of a point (what the tuning log stores)."""
        self._check(p)
        return {k.name: k.options[i].label for k, i in zip(self.knobs, p)}

    def key(self, p: Point) -> str:
        """A stable one-line name: `scheme=symmetric,clipping=kl,...`."""
        return ",".join(f"{k}={v}" for k, v in self.labels(p).items())

    def point(self, labels: Mapping[str, str]) -> Point:
        """The point with these option labels (the inverse of `labels`)."""
        out = []
        for k in self.knobs:
            if k.name not in labels:
                raise InputError(f"space {self.name}: no option given for knob {k.name!r}")
            try:
                out.append(k.labels().index(labels[k.name]))
            except ValueError:
                raise InputError(
                    f"space {self.name}: knob {k.name!r} has no option {labels[k.name]!r} "
                    f"(options: {', '.join(k.labels())})"
                ) from None
        return tuple(out)

    def contains(self, labels: Mapping[str, str]) -> bool:
        return all(k.name in labels and labels[k.name] in k.labels() for k in self.knobs)

    # ---- configurations -----------------------------------------------------------------------

    def fields(self, p: Point) -> dict[str, Any]:
        """The QuantConfig fields of a point: `base`, then each chosen option's fields."""
        self._check(p)
        out = dict(self.base)
        for k, i in zip(self.knobs, p):
            out.update(k.options[i].fields)
        return out

    def config(self, p: Point) -> QuantConfig:
        return QuantConfig.from_json(self.fields(p))

    # ---- features -----------------------------------------------------------------------------

    def feature_names(self) -> list[str]:
        """Names of `encode`'s columns: `knob=label`, one per option."""
        return [f"{k.name}={o.label}" for k in self.knobs for o in k.options]

    def encode(self, p: Point) -> np.ndarray:
        """One-hot encoding of a point (float32, one column per option of every knob)."""
        self._check(p)
        out = np.zeros(sum(len(k.options) for k in self.knobs), np.float32)
        offset = 0
        for k, i in zip(self.knobs, p):
            out[offset + i] = 1.0
            offset += len(k.options)
        return out

    def _check(self, p: Point) -> None:
        if len(p) != len(self.knobs) or any(
            not 0 <= i < len(k.options) for k, i in zip(self.knobs, p)
        ):
            raise ValueError(f"{p} is not a point of space {self.name}")


# ---- the spaces -------------------------------------------------------------------------------

# Quantune's int8 grid (its public experiment data; Glow's schemes): scheme x clipping x
# granularity x calibration-set size = 4 x 2 x 2 x 3 = 48 configurations.
SCHEME = knob(
    "scheme",
    asymmetric={"scheme": "asymmetric", "power_of_two": False},
    symmetric={"scheme": "symmetric", "power_of_two": False},
    symmetric_uint8={"scheme": "symmetric_uint8", "power_of_two": False},
    symmetric_pow2={"scheme": "symmetric", "power_of_two": True},
)
CLIPPING = knob("clipping", max={"method": "minmax"}, kl={"method": "kl"})
GRANULARITY = knob(
    "granularity", per_tensor={"per_channel": False}, per_channel={"per_channel": True}
)
# Quantune used 1 / 1,000 / 10,000 images of ImageNet; these are the same three orders of
# magnitude scaled to the small calibration sets a user passes here (0 = every sample given).
CALIBRATION = knob(
    "calibration", **{"1": {"samples": 1}, "16": {"samples": 16}, "all": {"samples": 0}}
)

QUANTUNE = Space(
    "quantune",
    (SCHEME, CLIPPING, GRANULARITY, CALIBRATION),
    description="Quantune's 48 int8 configurations: scheme x clipping x granularity x "
    "calibration-set size",
)

# Beyond Quantune: every calibration method, and weight rounding refinements.
EXTENDED = Space(
    "extended",
    (
        SCHEME,
        knob(
            "clipping",
            max={"method": "minmax"},
            kl={"method": "kl"},
            percentile={"method": "percentile"},
            mse={"method": "mse"},
        ),
        GRANULARITY,
        CALIBRATION,
        knob("bias_correction", off={"bias_correction": False}, on={"bias_correction": True}),
    ),
    description="every clipping method, bias correction on/off (192 configurations)",
)

# 4-bit weights, 8-bit activations: the rounding of the weights matters most here.
W4A8 = Space(
    "w4a8",
    (
        SCHEME,
        knob("clipping", max={"method": "minmax"}, mse={"method": "mse"}),
        GRANULARITY,
        knob("rounding", nearest={"rounding": "nearest"}, gptq={"rounding": "gptq"}),
        knob("bias_correction", off={"bias_correction": False}, on={"bias_correction": True}),
    ),
    base={"weight_bits": 4, "samples": 0},
    description="int4 weights, int8 activations: scheme x clipping x granularity x rounding "
    "x bias correction (64 configurations)",
)

SPACES: dict[str, Space] = {s.name: s for s in (QUANTUNE, EXTENDED, W4A8)}


def get_space(space: str | Space) -> Space:
    if isinstance(space, Space):
        return space
    try:
        return SPACES[space]
    except KeyError:
        raise InputError(
            f"unknown search space {space!r}; known: {', '.join(sorted(SPACES))}"
        ) from None
