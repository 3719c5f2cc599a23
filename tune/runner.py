"""Where trials run, and the loop that keeps them running.

Three executors with one interface (`submit(spec)`; `wait()` blocks until an in-flight trial
finishes and returns the finished results; `slots` trials may be in flight):

- `serial`: in this process, one at a time (workers=1; the default).
- `pool`: a local process pool (`workers=N`), `concurrent.futures` with the *spawn* start
  method: a forked child would inherit the driver's threads (BLAS, Ray, tqdm) in whatever state
  they were, and spawn behaves the same on Linux and macOS. Each worker receives the shared
  `Workload` once, through the pool initializer.
- `ray`: Ray tasks (`ray=ADDRESS|"auto"|"local"`), one CPU each; the workload goes into the
  object store once. No cluster code of our own: Ray schedules, retries and reports.

`search` asks the strategy for points as results come back, so `slots` trials stay in flight
and each proposal sees every finished measurement (points still in flight are excluded by
asking for a few more than needed).
"""

from __future__ import annotations

import math
import pickle
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from modelc.errors import InputError
from modelc.tune.log import TuneLog
from modelc.tune.objective import Goal
from modelc.tune.space import Point, Space
from modelc.tune.strategies.base import Strategy
from modelc.tune.trial import TrialResult, TrialSpec, Workload, failed, run_trial

# ---- executors ---------------------------------------------------------------------------------


class Executor(ABC):
    """Runs trials: `submit` queues one, `wait` returns at least one finished trial."""

    name = ""
    slots = 1

    @abstractmethod
    def submit(self, spec: TrialSpec) -> None: ...

    @abstractmethod
    def wait(self) -> list[TrialResult]: ...

    @abstractmethod
    def in_flight(self) -> int: ...

    def close(self) -> None:  # noqa: B027 - optional hook: executors without resources keep it
        """Release workers or the Ray connection (nothing to release by default)."""

    def run(self, spec: TrialSpec) -> TrialResult:
        """One trial to completion (nothing else may be in flight)."""
        self.submit(spec)
        return self.wait()[0]


class SerialExecutor(Executor):
    name = "serial"

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.queue: deque[TrialSpec] = deque()

    def submit(self, spec: TrialSpec) -> None:
        self.queue.append(spec)

    def wait(self) -> list[TrialResult]:
        return [run_trial(self.workload, self.queue.popleft())]

    def in_flight(self) -> int:
        return len(self.queue)


_WORKLOAD: list[Workload] = []  # the worker process's workload, set once by the initializer


def _init_worker(workload: Workload) -> None:
    _WORKLOAD[:] = [workload]


def _pool_trial(spec: TrialSpec) -> TrialResult:
    return run_trial(_WORKLOAD[0], spec)


class PoolExecutor(Executor):
    name = "pool"

    def __init__(self, workload: Workload, workers: int) -> None:
        _check_picklable(workload, f"workers={workers}")
        self.workload, self.slots = workload, workers
        self.pending: dict[Future[TrialResult], TrialSpec] = {}
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        import multiprocessing

        return ProcessPoolExecutor(
            max_workers=self.slots,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.workload,),
        )

    def submit(self, spec: TrialSpec) -> None:
        self.pending[self.pool.submit(_pool_trial, spec)] = spec

    def wait(self) -> list[TrialResult]:
        done, _ = wait_futures(list(self.pending), return_when=FIRST_COMPLETED)
        future = next(iter(done))
        spec = self.pending.pop(future)
        try:
            return [future.result()]
        except BrokenProcessPool as e:
            # A worker died (a crash in generated code, the OOM killer): every trial in flight
            # is lost with it. Fail them all and start a fresh pool for what comes next.
            lost = [spec, *self.pending.values()]
            self.pending.clear()
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._start()
            return [failed(s, f"worker process died ({e})") for s in lost]
        except Exception as e:  # noqa: BLE001 - e.g. the workload could not be unpickled there
            return [failed(spec, f"{type(e).__name__}: {e}")]

    def in_flight(self) -> int:
        return len(self.pending)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


CONNECT_TIMEOUT_S = 5.0


def _check_reachable(address: str) -> None:
    """Fail fast on an unreachable Ray head: `ray.init` retries a dead GCS address for minutes
    before it gives up, which looks like a hang. `auto` (and `local`) need no network check:
    Ray finds a running local cluster from its session files, or says at once there is none."""
    import socket

    if address == "auto":
        return
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(
            f"ray: address {address!r} is not HOST:PORT, ray://HOST:PORT, auto or local"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise InputError(
            f"ray: cannot reach {address!r} ({e}); start a cluster with `ray start --head` (then "
            "--ray auto or --ray HOST:6379), or use --ray local for a one-machine instance"
        ) from None


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, workload: Workload, address: str, workers: int | None) -> None:
        ray = import_ray()
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False}
            if address == "local":
                kwargs["include_dashboard"] = False
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as e:
                raise InputError(
                    f"ray: cannot connect to {address!r} ({e}); start a cluster with `ray start "
                    "--head` (then --ray auto), or use --ray local for a one-machine instance"
                ) from None
            self.started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = max(1, min(workers, cpus) if workers else cpus)
        try:
            self.ref = ray.put(workload)
        except Exception as e:  # noqa: BLE001 - Ray's serializer says what did not pickle
            self.close()
            raise InputError(_unpicklable("ray", e)) from None
        self.task = ray.remote(num_cpus=1)(run_trial)
        self.pending: dict[Any, TrialSpec] = {}

    def submit(self, spec: TrialSpec) -> None:
        self.pending[self.task.remote(self.ref, spec)] = spec

    def wait(self) -> list[TrialResult]:
        (ref,), _ = self.ray.wait(list(self.pending), num_returns=1)
        spec = self.pending.pop(ref)
        try:
            return [self.ray.get(ref)]
        except Exception as e:  # noqa: BLE001 - a task that died reports as a failed trial
            return [failed(spec, f"ray task failed: {type(e).__name__}: {str(e)[:500]}")]

    def in_flight(self) -> int:
        return len(self.pending)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(
            "--ray / ray= needs Ray, which is not installed: pip install 'modelc[distributed]'"
        ) from None
    return ray


def check_executor(workers: int | None, ray: str | None, evaluate: Any = None) -> None:
    """The errors `make_executor` would raise, found before anything is compiled."""
    if workers is not None and workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    if ray is not None:
        import_ray()
        if ray != "local":
            _check_reachable(ray)
    elif workers and workers > 1 and evaluate is not None:
        try:
            pickle.dumps(evaluate)
        except Exception as e:  # noqa: BLE001 - PicklingError, AttributeError, TypeError ...
            raise InputError(_unpicklable(f"workers={workers}", e)) from None


def make_executor(workload: Workload, workers: int | None, ray: str | None) -> Executor:
    check_executor(workers, ray)
    if ray is not None:
        return RayExecutor(workload, ray, workers)
    if not workers or workers == 1:
        return SerialExecutor(workload)
    return PoolExecutor(workload, workers)


def _check_picklable(workload: Workload, where: str) -> None:
    try:
        pickle.dumps(workload)
    except Exception as e:  # noqa: BLE001 - PicklingError, AttributeError, TypeError ...
        raise InputError(_unpicklable(where, e)) from None


def _unpicklable(where: str, e: Exception) -> str:
    return (
        f"{where}: the tuning workload cannot be sent to worker processes ({type(e).__name__}: "
        f"{e}); a callable evaluate= must be a module-level function (not a lambda, closure or "
        "bound method of a local object), or run with workers=1 (CLI: --workers 1)"
    )


# ---- the search loop ---------------------------------------------------------------------------


@dataclass
class Search:
    """The budgeted search: ask, run, tell, log, until the budget or patience runs out."""

    space: Space
    strategy: Strategy
    goal: Goal
    log: TuneLog
    budget: int
    patience: int | None = None
    on_result: Callable[[TrialResult], None] | None = None

    def measured(self) -> dict[Point, float]:
        """Objective by point of the search trials in the log (a resumed log names points by
        their labels; trials of options this space no longer has are left out)."""
        out: dict[Point, float] = {}
        for t in self.log.trials:
            if t.kind == "search" and self.space.contains(t.labels):
                t.point = self.space.point(t.labels)
                out[t.point] = t.objective
        return out

    def run(self, executor: Executor) -> None:
        measured = self.measured()
        best, stale = -math.inf, 0
        for t in self.log.trials:  # patience continues across a resume
            if t.kind == "search":
                best, stale = (t.objective, 0) if t.objective > best else (best, stale + 1)
        done, index = len(measured), self.log.next_index()
        flying: set[Point] = set()
        exhausted = False
        while True:
            stop = self.patience is not None and stale >= self.patience
            while not (stop or exhausted) and len(flying) < executor.slots:
                want = min(executor.slots - len(flying), self.budget - done - len(flying))
                if want <= 0:
                    break
                asked = self.strategy.propose(measured, want + len(flying))
                points = [p for p in asked if p not in flying and p not in measured][:want]
                if not points:  # nothing new now: ask again after the next result, if any
                    exhausted = not flying
                    break
                for p in points:
                    executor.submit(self.spec(index, p))
                    flying.add(p)
                    index += 1
            if not flying:
                return
            for r in executor.wait():
                assert r.point is not None
                flying.discard(r.point)
                r.objective = self.goal.value(r.score, r.metrics)
                measured[r.point] = r.objective
                self.log.append(r, self.space.name)
                done += 1
                best, stale = (r.objective, 0) if r.objective > best else (best, stale + 1)
                if self.on_result:
                    self.on_result(r)

    def spec(self, index: int, p: Point) -> TrialSpec:
        return TrialSpec(index, self.space.fields(p), p, self.space.labels(p))
