"""Which registered passes the targets' default pipelines use.

A pass that is registered but in no target's pipeline runs only when a user names it in
`--pipeline`: easy to write, test and then forget to wire in (or to wire out and forget to
delete). `unused_passes` lists them; `modelc inspect --passes` prints the table and warns, and
the test suite warns too, so the gap is visible without failing anyone's build (a pass may be
opt-in on purpose, like a compression pass that needs calibration data).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from modelc.passes.registry import all_passes, parse_pipeline


class UnusedPassWarning(UserWarning):
    """A registered pass that no target's default pipeline runs."""


def pipeline_users() -> dict[str, list[str]]:
    """Registered pass name -> the targets whose default pipeline runs it (possibly none)."""
    # Targets wire passes, renderers and toolchains together, so they are imported lazily:
    # passes must not depend on targets at import time.
    from modelc.targets.registry import all_targets

    return _users(all_passes(), {t.name: t.pipeline for t in all_targets().values()})


def _users(passes: Mapping[str, object], pipelines: Mapping[str, str]) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {name: [] for name in sorted(passes)}
    for target, pipeline in sorted(pipelines.items()):
        for p in parse_pipeline(pipeline):
            if target not in users.setdefault(p.name, []):
                users[p.name].append(target)
    return users


def unused_passes(
    passes: Mapping[str, object] | None = None, pipelines: Mapping[str, str] | None = None
) -> list[str]:
    """Registered passes that no target's default pipeline uses, sorted. Tests may pass their
    own `passes` (name -> class) and `pipelines` (target -> pipeline string)."""
    if passes is None and pipelines is None:
        users = pipeline_users()
    else:
        from modelc.targets.registry import all_targets

        users = _users(
            all_passes() if passes is None else passes,
            {t.name: t.pipeline for t in all_targets().values()}
            if pipelines is None
            else pipelines,
        )
    return [name for name, targets in users.items() if not targets]


def warn_unused_passes(unused: list[str] | None = None) -> list[str]:
    """Emit one `UnusedPassWarning` naming every unused pass; returns them."""
    names = unused_passes() if unused is None else unused
    if names:
        warnings.warn(
            f"registered passes that no target pipeline uses: {', '.join(names)} "
            "(add them to a target's pipeline, or delete them if nothing needs them)",
            UnusedPassWarning,
            stacklevel=2,
        )
    return names
