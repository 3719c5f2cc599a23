"""One tuning trial: compile with a configuration, score it, time it, weigh it.

`run_trial(workload, spec)` is a module-level function of two picklable arguments, so the same
code runs in the driver (workers=1), in a spawned worker process, and as a Ray task:

- `Workload` is what every trial of a run shares (the imported graph, the calibration arrays,
  the evaluation hook, the target): sent once per worker process, or put once in Ray's object
  store.
- `TrialSpec` is what differs (the configuration's QuantConfig fields and where it came from):
  a few hundred bytes per trial.

A trial never raises: every failure (a configuration the quantizer rejects, a compile error, a
crash of the user's hook) becomes a failed `TrialResult` with score -inf and the error text, so
one bad configuration cannot end a search of fifty.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelc.tune.evaluate import Arrays, Evaluation

TARGET = "cpu-int8"
FLOAT_TARGET = "cpu"
LATENCY_RUNS = 5


@dataclass(frozen=True)
class Workload:
    """What every trial of a run shares. `graph` is the imported model (a `Graph` pickles:
    numpy constants and frozen dataclasses), so workers never re-import ONNX or torch."""

    graph: Any
    calibration: Arrays
    evaluation: Evaluation
    latency_feed: Arrays
    target: str = TARGET
    latency_runs: int = LATENCY_RUNS


@dataclass(frozen=True)
class TrialSpec:
    """One configuration to measure. `fields` are QuantConfig fields (checked inside the trial,
    so a configuration the quantizer rejects is a failed trial, not a crashed run)."""

    index: int
    fields: dict[str, Any]
    point: tuple[int, ...] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    kind: str = "search"  # search | fallback | float


@dataclass
class TrialResult:
    """A measured configuration. `objective` is filled in by the driver (it depends on the
    float model's score, which a worker does not know)."""

    index: int
    config: dict[str, Any]
    point: tuple[int, ...] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    kind: str = "search"
    score: float = -math.inf
    metrics: dict[str, float] = field(default_factory=dict)
    layers_sqnr: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    worker: str = ""
    error: str | None = None
    objective: float = -math.inf

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def fallback(self) -> list[str]:
        fb = self.config.get("fallback", [])
        return list(fb) if isinstance(fb, (list, tuple)) else [s for s in str(fb).split(",") if s]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_trial(workload: Workload, spec: TrialSpec) -> TrialResult:
    """Compile `spec`'s configuration, score it with the workload's hook, time it."""
    from modelc.passes.quantize import QuantConfig

    start = time.perf_counter()
    result = TrialResult(
        spec.index,
        dict(spec.fields),
        spec.point,
        dict(spec.labels),
        spec.kind,
        worker=worker_name(),
    )
    try:
        cfg = QuantConfig.from_json(spec.fields)
        result.config = json.loads(cfg.to_json())
        lib = compile_model(workload, workload.target, result.config)
        measure(lib, workload, result)
        report = lib.manifest.get("pass_reports", {}).get("quantize", {})
        result.layers_sqnr = {
            name: float(row["sqnr_db"]) for name, row in report.get("layers", {}).items()
        }
    except Exception as e:  # noqa: BLE001 - any failure is this configuration's result
        result.score = -math.inf
        result.error = f"{type(e).__name__}: {_one_line(str(e))}"
    result.seconds = round(time.perf_counter() - start, 4)
    return result


def compile_model(workload: Workload, target: str, cfg: Any = None) -> Any:
    from modelc.api import compile as compile_

    if target == FLOAT_TARGET:
        return compile_(workload.graph, target=target)
    return compile_(
        workload.graph, target=target, calibration=workload.calibration, quant_config=cfg
    )


def failed(spec: TrialSpec, error: str) -> TrialResult:
    """The result of a trial that never reported (its worker died, or could not start)."""
    return TrialResult(
        spec.index, dict(spec.fields), spec.point, dict(spec.labels), spec.kind, error=error
    )


def measure(lib: Any, workload: Workload, result: TrialResult) -> None:
    """Score, latency (median of a few runs after a warm-up, ms) and weight bytes."""
    result.score, metrics = workload.evaluation.score(lib)
    metrics["latency_ms"] = latency_ms(lib, workload.latency_feed, workload.latency_runs)
    size = lib.manifest.get("weights_bytes")
    if isinstance(size, int):
        metrics["size_bytes"] = size
    result.metrics = metrics


def latency_ms(lib: Any, feed: Arrays, runs: int) -> float:
    lib.run(feed)  # warm-up: page in the weights, fill the caches
    times = []
    for _ in range(max(1, runs)):
        t = time.perf_counter()
        lib.run(feed)
        times.append(time.perf_counter() - t)
    return round(1000.0 * float(np.median(times)), 4)


def measure_float(lib: Any, workload: Workload) -> TrialResult:
    """The float model's library measured like a trial: the reference every loss is against.
    Errors propagate: without a float score there is nothing to tune against."""
    start = time.perf_counter()
    result = TrialResult(-1, {}, kind="float", worker=worker_name())
    measure(lib, workload, result)
    result.seconds = round(time.perf_counter() - start, 4)
    return result


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())
