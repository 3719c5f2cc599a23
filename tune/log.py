"""The tuning log: JSON lines, a header then one line per trial, appended as trials finish.

    {"type": "header", "format": 1, "model": "lenet", "model_hash": "…", "space": "quantune", …}
    {"type": "trial", "trial": 0, "kind": "search", "labels": {"scheme": "asymmetric", …},
     "config": {…QuantConfig…}, "score": 97.5, "objective": 97.5, "metrics": {…}, …}
    {"type": "resume", "strategy": "xgb", "seed": 0, …}

Why JSON lines: a run killed half-way leaves every finished trial on disk (one `write` + flush
per line), so `modelc tune ... -o DIR` again resumes it; a half-written last line is ignored. The
same files are the training data of transfer: `load_prior` reads other models' logs into
`PriorRecord`s (model descriptor, option labels, score) for the cost model.

Non-finite numbers (a failed trial's -inf score, the float model's infinite SQNR) are written
as null: strict JSON, readable by any tool.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelc.errors import InputError
from modelc.tune.strategies.base import PriorRecord
from modelc.tune.trial import TrialResult

FORMAT = 1
LOG_NAME = "log.jsonl"
# Header fields a resumed run must agree on: otherwise old scores mean something else.
MUST_MATCH = {
    "model_hash": "the log was written for another model ({old}; this one is {new})",
    "space": "the log searched space {old!r}, this run space {new!r}",
    "evaluation": "the log scored with the {old!r} hook, this run with {new!r}",
    "data_hash": "the log scored on other calibration / eval data",
}


def clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null, tuples lists, numpy scalars Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def trial_record(t: TrialResult, space: str) -> dict[str, Any]:
    return clean(
        {
            "type": "trial",
            "trial": t.index,
            "kind": t.kind,
            "space": space,
            "labels": t.labels,
            "config": t.config,
            "score": t.score,
            "objective": t.objective,
            "metrics": t.metrics,
            "layers_sqnr": t.layers_sqnr,
            "seconds": t.seconds,
            "worker": t.worker,
            "error": t.error,
        }
    )


def trial_from_record(rec: Mapping[str, Any]) -> TrialResult:
    def num(v: Any) -> float:
        return -math.inf if v is None else float(v)

    return TrialResult(
        index=int(rec["trial"]),
        config=dict(rec.get("config") or {}),
        labels={str(k): str(v) for k, v in (rec.get("labels") or {}).items()},
        kind=str(rec.get("kind", "search")),
        score=num(rec.get("score")),
        metrics={k: float(v) for k, v in (rec.get("metrics") or {}).items() if v is not None},
        layers_sqnr={
            k: float(v) for k, v in (rec.get("layers_sqnr") or {}).items() if v is not None
        },
        seconds=float(rec.get("seconds") or 0.0),
        worker=str(rec.get("worker", "")),
        error=rec.get("error"),
        objective=num(rec.get("objective")),
    )


def read_log(path: str | Path) -> tuple[dict[str, Any], list[TrialResult]]:
    """(header, trials) of a log; a half-written last line (a killed run) is skipped."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise InputError(f"tuning log {p}: cannot read it ({e.strerror or e})") from None
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # the run was killed while writing this line
            raise InputError(
                f"tuning log {p}: line {i + 1} is not JSON; is it a log.jsonl of `modelc tune`?"
            ) from None
    if not records or records[0].get("type") != "header":
        raise InputError(f"tuning log {p}: no header line; is it a log.jsonl of `modelc tune`?")
    trials = [trial_from_record(r) for r in records if r.get("type") == "trial"]
    return records[0], trials


@dataclass
class TuneLog:
    """An open log: the header, the trials already in it, and the file new ones go to."""

    path: Path | None
    header: dict[str, Any]
    trials: list[TrialResult] = field(default_factory=list)
    resumed: bool = False

    @classmethod
    def open(
        cls, directory: str | Path | None, header: Mapping[str, Any], restart: bool = False
    ) -> TuneLog:
        """Start a log in `directory`, or continue the one there (same model, space and data),
        or start over with `restart`. Without a directory the log lives in memory only."""
        head = clean({"type": "header", "format": FORMAT, **header, "created": _now()})
        if directory is None:
            return cls(None, head)
        path = Path(directory) / LOG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not restart:
            old, trials = read_log(path)
            _check_same_run(path, old, head)
            log = cls(path, old, trials, resumed=True)
            keys = ("strategy", "seed", "objective")
            log._write({"type": "resume", **{k: head.get(k) for k in keys}, "created": _now()})
            return log
        path.write_text("")
        log = cls(path, head)
        log._write(head)
        return log

    def append(self, trial: TrialResult, space: str) -> None:
        self.trials.append(trial)
        self._write(trial_record(trial, space))

    def next_index(self) -> int:
        return max((t.index for t in self.trials), default=-1) + 1

    def _write(self, record: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(clean(record), sort_keys=False) + "\n")
            f.flush()


def _check_same_run(path: Path, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    for key, why in MUST_MATCH.items():
        if old.get(key) != new.get(key):
            reason = why.format(old=old.get(key), new=new.get(key))
            raise InputError(
                f"{path.parent}: cannot resume: {reason}; pass --restart (restart=True) to "
                "overwrite this log, or choose another output folder"
            )


def load_prior(paths: Iterable[str | Path]) -> list[PriorRecord]:
    """Measured trials of other models, for transfer: one PriorRecord per successful search
    trial (failed and fallback trials say nothing about a configuration on another model)."""
    out: list[PriorRecord] = []
    for p in paths:
        header, trials = read_log(p)
        model = str(header.get("model", Path(p).parent.name))
        descriptor = {str(k): float(v) for k, v in (header.get("descriptor") or {}).items()}
        for t in trials:
            if t.ok and t.kind == "search" and t.labels:
                out.append(PriorRecord(model, descriptor, dict(t.labels), t.score))
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
