"""The tuner's loop, log, objectives and fallback without compiling anything: a fake executor
scores points with a formula, so these tests check the bookkeeping (budget, slots in flight,
patience, resume, failures as -inf) in milliseconds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from modelc.errors import InputError
from modelc.tune.fallback import fallback_search, worst_layer
from modelc.tune.log import LOG_NAME, TuneLog, load_prior, read_log
from modelc.tune.objective import INFEASIBLE, Goal, make_goal
from modelc.tune.report import pareto_front, ranked, table
from modelc.tune.runner import Executor, Search
from modelc.tune.space import QUANTUNE, Point
from modelc.tune.strategies import get_strategy, strategy_names
from modelc.tune.trial import TrialResult, TrialSpec

HEADER = {"model": "fake", "model_hash": "abc", "space": "quantune", "evaluation": "accuracy"}


def formula(p: Point) -> float:
    """A made-up score: 90 minus a penalty per knob option."""
    return 90.0 - 2.0 * p[0] - 1.0 * p[1] - 0.5 * p[2] - 0.25 * p[3]


class FakeExecutor(Executor):
    """Finishes the most recently submitted trial first (out of order, like a real pool)."""

    def __init__(self, slots: int, fail: set[Point] = frozenset()) -> None:  # type: ignore[assignment]
        self.slots, self.fail = slots, fail
        self.pending: list[TrialSpec] = []
        self.submitted: list[Point] = []
        self.most_in_flight = 0

    def submit(self, spec: TrialSpec) -> None:
        self.pending.append(spec)
        assert spec.point is not None
        self.submitted.append(spec.point)
        self.most_in_flight = max(self.most_in_flight, len(self.pending))

    def wait(self) -> list[TrialResult]:
        spec = self.pending.pop()
        assert spec.point is not None
        r = TrialResult(spec.index, dict(spec.fields), spec.point, dict(spec.labels), spec.kind)
        if spec.point in self.fail:
            r.error = "InputError: no"
        else:
            r.score = formula(spec.point)
            r.metrics = {"latency_ms": 1.0 + spec.point[0], "size_bytes": 100.0}
        return [r]

    def in_flight(self) -> int:
        return len(self.pending)


def search(log: TuneLog, budget: int, strategy: str = "random", **kw: Any) -> Search:
    strat = get_strategy(strategy)(QUANTUNE, seed=1)
    return Search(QUANTUNE, strat, Goal(float_score=90.0), log, budget, **kw)


def test_budget_slots_and_no_repeats() -> None:
    log = TuneLog.open(None, HEADER)
    ex = FakeExecutor(slots=3)
    search(log, 10).run(ex)
    assert len(log.trials) == 10 and len(set(ex.submitted)) == 10
    assert ex.most_in_flight == 3
    assert sorted(t.index for t in log.trials) == list(range(10))
    # a budget above the space size stops when the space is exhausted
    log = TuneLog.open(None, HEADER)
    search(log, 100, "grid").run(FakeExecutor(slots=4))
    assert len(log.trials) == QUANTUNE.size()


@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_fills_the_budget_with_trials_in_flight(name: str) -> None:
    log = TuneLog.open(None, HEADER)
    ex = FakeExecutor(slots=3, fail={QUANTUNE.points()[5]})
    search(log, 12, name).run(ex)
    assert len(log.trials) == 12 and len(set(ex.submitted)) == 12


def test_failures_are_minus_inf_and_not_retried() -> None:
    bad = {QUANTUNE.points()[0], QUANTUNE.points()[1]}
    log = TuneLog.open(None, HEADER)
    ex = FakeExecutor(slots=1, fail=bad)
    search(log, 5, "grid").run(ex)
    failed = [t for t in log.trials if not t.ok]
    assert {t.point for t in failed} == bad and all(t.objective == -math.inf for t in failed)
    assert len(ex.submitted) == len(set(ex.submitted)) == 5


def test_patience_stops_after_k_trials_without_improvement() -> None:
    log = TuneLog.open(None, HEADER)
    search(log, 40, "grid", patience=3).run(FakeExecutor(slots=1))
    # grid order starts at the best point of the formula: then 3 worse ones, then stop
    assert len(log.trials) == 4


def test_resume_continues_without_rerunning(tmp_path: Path) -> None:
    log = TuneLog.open(tmp_path, HEADER)
    search(log, 4).run(FakeExecutor(slots=2))
    first = {t.point for t in log.trials}
    again = TuneLog.open(tmp_path, HEADER)
    assert again.resumed and {QUANTUNE.point(t.labels) for t in again.trials} == first
    ex = FakeExecutor(slots=2)
    search(again, 7).run(ex)
    assert len(ex.submitted) == 3 and not first & set(ex.submitted)
    header, trials = read_log(tmp_path / LOG_NAME)
    assert header["model"] == "fake" and len(trials) == 7
    assert sorted(t.index for t in trials) == list(range(7))
    kinds = [json.loads(line)["type"] for line in (tmp_path / LOG_NAME).read_text().splitlines()]
    assert kinds.count("header") == 1 and kinds.count("resume") == 1


def test_resume_refuses_another_model_unless_restart(tmp_path: Path) -> None:
    log = TuneLog.open(tmp_path, HEADER)
    search(log, 2).run(FakeExecutor(slots=1))
    with pytest.raises(InputError, match="another model.*--restart"):
        TuneLog.open(tmp_path, {**HEADER, "model_hash": "def"})
    with pytest.raises(InputError, match="space 'quantune'"):
        TuneLog.open(tmp_path, {**HEADER, "space": "w4a8"})
    fresh = TuneLog.open(tmp_path, {**HEADER, "model_hash": "def"}, restart=True)
    assert not fresh.resumed and fresh.trials == []


def test_half_written_last_line_is_skipped(tmp_path: Path) -> None:
    log = TuneLog.open(tmp_path, HEADER)
    search(log, 3).run(FakeExecutor(slots=1))
    with (tmp_path / LOG_NAME).open("a") as f:
        f.write('{"type": "trial", "tri')
    assert len(read_log(tmp_path / LOG_NAME)[1]) == 3
    (tmp_path / "bad.jsonl").write_text("not json\n{}\n")
    with pytest.raises(InputError, match="line 1 is not JSON"):
        read_log(tmp_path / "bad.jsonl")


def test_load_prior(tmp_path: Path) -> None:
    head = {**HEADER, "model": "lenet", "descriptor": {"conv": 2.0, "nodes": 9.0}}
    log = TuneLog.open(tmp_path, head)
    search(log, 4, "grid").run(FakeExecutor(slots=1, fail={QUANTUNE.points()[0]}))
    prior = load_prior([tmp_path / LOG_NAME])
    assert len(prior) == 3  # the failed trial says nothing about another model
    assert prior[0].model == "lenet" and prior[0].descriptor == {"conv": 2.0, "nodes": 9.0}
    assert all(QUANTUNE.contains(p.labels) for p in prior)
    assert sorted(p.score for p in prior) == sorted(t.score for t in log.trials if t.ok)


def test_objectives() -> None:
    lat = Goal("latency", max_loss=1.0, float_score=90.0)
    fast_bad = lat.value(80.0, {"latency_ms": 1.0})
    slow_good = lat.value(89.5, {"latency_ms": 5.0})
    fast_good = lat.value(89.2, {"latency_ms": 2.0})
    assert fast_good > slow_good > INFEASIBLE / 2 > fast_bad
    within = Goal("accuracy-within-latency", max_latency_ms=3.0, float_score=90.0)
    assert within.value(89.2, {"latency_ms": 2.0}) == 89.2
    assert within.value(89.5, {"latency_ms": 5.0}) < INFEASIBLE / 2
    assert Goal().value(-math.inf, {}) == -math.inf
    with pytest.raises(InputError, match="--max-loss"):
        make_goal("latency")
    with pytest.raises(InputError, match="--max-latency-ms"):
        make_goal("accuracy-within-latency")
    with pytest.raises(InputError, match="unknown tuning objective.*accuracy-within-latency"):
        make_goal("speed")


def test_fallback_floats_the_weakest_layers_until_within_budget(tmp_path: Path) -> None:
    sqnr = {"conv1": 30.0, "conv2": 12.0, "fc": 20.0}
    runs: list[list[str]] = []

    def run(spec: TrialSpec) -> TrialResult:
        fb = list(spec.fields["fallback"])
        runs.append(fb)
        left = {k: v + 1.0 for k, v in sqnr.items() if k not in fb}  # floats help the others
        config = {**spec.fields, "fallback": fb}
        return TrialResult(
            spec.index, config, spec.point, spec.labels, spec.kind, 86.0 + 2 * len(fb), {}, left
        )

    goal = Goal(max_loss=1.0, float_score=90.0)
    log = TuneLog.open(tmp_path, HEADER)
    best = TrialResult(0, {"scheme": "asymmetric", "fallback": []}, (0, 0, 0, 0), score=86.0)
    best.layers_sqnr = dict(sqnr)
    assert worst_layer(best) == "conv2"
    steps = fallback_search(run, best, goal, log, "quantune", steps=3)
    assert runs == [["conv2"], ["conv2", "fc"]]  # 88 is not within 1 point of 90, 90 is
    assert [t.kind for t in steps] == ["fallback", "fallback"] and steps[-1].score == 90.0
    # resumed: the steps are in the log and are not measured again
    again = TuneLog.open(tmp_path, HEADER)
    assert len(fallback_search(run, best, goal, again, "quantune", steps=3)) == 2
    assert len(runs) == 2
    # within budget already, or no max_loss: nothing to do
    assert fallback_search(run, steps[-1], goal, log, "quantune") == []
    assert fallback_search(run, best, Goal(float_score=90.0), log, "quantune") == []


def test_pareto_front_and_table() -> None:
    pts = [(100, 80.0), (50, 70.0), (100, 75.0), (200, 85.0), (60, 60.0), (50, 65.0)]
    assert sorted(pareto_front(pts)) == [0, 1, 3]
    trials = [
        TrialResult(i, {}, labels={"scheme": "s"}, score=s, metrics={"size_bytes": b})
        for i, (b, s) in enumerate(pts)
    ]
    for t in trials:
        t.objective = t.score
    trials.append(TrialResult(9, {}, error="InputError: no"))
    assert [t.index for t in ranked(trials)][:3] == [3, 0, 2]
    text = table(trials, Goal(float_score=86.0), {"size_bytes": 400.0, "latency_ms": 1.0})
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["rank", "score", "loss"] and len(lines) == 1 + 5 + 2
    assert "float model" in lines[-2] and "1 of 7 trials failed" in lines[-1]
