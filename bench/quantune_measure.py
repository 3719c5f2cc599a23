"""Exhaustive tables of the Quantune benchmark: every configuration of a space, measured.

A table is one `modelc.tune` run with the grid strategy and a budget of the whole space, so the
benchmark exercises the real tool (its trial: compile for cpu-int8, top-1 on the eval set in
percent, timed) and its log is the cache: `<cache>/tune/<model>.<space>/log.jsonl`. A rerun finds
every point in the log and measures nothing. Failed trials are dropped from the log before a
rerun so they are measured again: a configuration fails while the quantizer lacks a feature
(symmetric_uint8, gptq rounding), and passes once it lands.

`tables.json` in the cache folder collects the tables of the last run (space -> model -> rows):
what the strategy replays and docs/quantization.md are computed from.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelc.errors import InputError
from modelc.tune.space import Point, Space, get_space


@dataclass
class Table:
    """One model's measurements over one space."""

    model: str
    space: str
    float_top1: float  # percent, the float model compiled for `cpu`, same eval set
    descriptor: dict[str, float]
    top1: dict[Point, float]  # -inf for a failed trial
    seconds: dict[Point, float]  # compile + evaluation (+ the tool's latency probe)
    errors: dict[Point, str] = field(default_factory=dict)

    @property
    def best(self) -> float:
        return max(self.top1.values())

    def ok(self) -> dict[Point, float]:
        return {p: s for p, s in self.top1.items() if math.isfinite(s)}

    def to_json(self, space: Space) -> dict[str, Any]:
        return {
            "model": self.model,
            "space": self.space,
            "float_top1": self.float_top1,
            "descriptor": self.descriptor,
            "rows": [
                {
                    "labels": space.labels(p),
                    "top1": self.top1[p] if math.isfinite(self.top1[p]) else None,
                    "seconds": self.seconds[p],
                    "error": self.errors.get(p),
                }
                for p in space.points()
                if p in self.top1
            ],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Table:
        space = get_space(d["space"])
        t = cls(d["model"], d["space"], d["float_top1"], d["descriptor"], {}, {})
        for r in d["rows"]:
            p = space.point(r["labels"])
            t.top1[p] = -math.inf if r["top1"] is None else float(r["top1"])
            t.seconds[p] = float(r["seconds"])
            if r.get("error"):
                t.errors[p] = r["error"]
        return t


def measure(
    model: str,
    onnx: Path,
    space_name: str,
    cache: Path,
    calibration: Path,
    eval_data: Path,
    workers: int = 2,
    restart: bool = False,
    log: Callable[[str], None] = print,
) -> Table:
    """The exhaustive table of `model` over `space_name`, measured where the log lacks points."""
    import modelc

    space = get_space(space_name)
    out = cache / "tune" / f"{model}.{space.name}"
    if restart and out.exists():
        shutil.rmtree(out)
    logfile = out / "log.jsonl"
    missing = space.size() - _drop_failed(logfile, space)
    if missing:
        log(f"measuring {model} / {space.name}: {missing} of {space.size()} configurations")
        run = functools.partial(
            modelc.tune,
            str(onnx),
            calibration=str(calibration),
            eval_data=str(eval_data),
            strategy="grid",
            space=space,
            trials=space.size(),
            workers=workers,
            output_dir=out,
            progress=False,
        )
        try:
            run()
        except InputError as e:
            if "cannot resume" not in str(e):
                raise
            log(f"{model} / {space.name}: the log is of another model or data; starting over")
            run(restart=True)
    return read_table(model, space, logfile)


def read_table(model: str, space: Space, logfile: Path) -> Table:
    from modelc.tune.log import read_log

    header, trials = read_log(logfile)
    table = Table(
        model,
        space.name,
        float(header["float"]["score"]),
        {str(k): float(v) for k, v in (header.get("descriptor") or {}).items()},
        {},
        {},
    )
    for t in trials:
        if t.kind != "search" or not space.contains(t.labels):
            continue
        p = space.point(t.labels)
        table.top1[p] = t.score if t.ok else -math.inf
        table.seconds[p] = t.seconds
        if t.error:
            table.errors[p] = t.error
    return table


def _drop_failed(logfile: Path, space: Space) -> int:
    """Remove failed trial lines from the log (so a resumed run measures them again); returns
    how many points of `space` the log still holds."""
    if not logfile.exists():
        return 0
    keep, points = [], set()
    for line in logfile.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a half-written last line of a killed run
        if rec.get("type") == "trial" and rec.get("kind") == "search":
            if rec.get("error"):
                continue
            labels = rec.get("labels") or {}
            if space.contains(labels):
                points.add(space.point(labels))
        keep.append(line)
    logfile.write_text("".join(line + "\n" for line in keep))
    return len(points)


def save_tables(path: Path, tables: dict[str, dict[str, Table]]) -> None:
    """Write space -> model -> table as one JSON document."""
    doc = {
        space: {model: t.to_json(get_space(space)) for model, t in models.items()}
        for space, models in tables.items()
    }
    path.write_text(json.dumps(doc, indent=1))


def load_tables(path: Path) -> dict[str, dict[str, Table]]:
    doc = json.loads(path.read_text())
    return {s: {m: Table.from_json(d) for m, d in models.items()} for s, models in doc.items()}
