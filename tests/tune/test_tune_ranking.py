"""How the tuner orders trials (report.ranked): the objective first; on ties the output SQNR
against the float model, then size, then latency. Fidelity scores (top-1 agreement on a few
held-back samples) tie often, so the tie-break decides which configuration becomes best.json."""

from __future__ import annotations

from modelc.tune.report import ranked
from modelc.tune.trial import TrialResult


def trial(index: int, objective: float, **metrics: float) -> TrialResult:
    return TrialResult(index, {}, objective=objective, score=objective, metrics=dict(metrics))


def test_ties_go_to_higher_sqnr_then_smaller_then_faster() -> None:
    trials = [
        trial(0, 100.0, sqnr_db=20.0, size_bytes=100, latency_ms=1.0),
        trial(1, 100.0, sqnr_db=31.0, size_bytes=200, latency_ms=2.0),
        trial(2, 99.0, sqnr_db=40.0, size_bytes=50, latency_ms=0.5),
        trial(3, 100.0, sqnr_db=31.0, size_bytes=150, latency_ms=3.0),
    ]
    assert [t.index for t in ranked(trials)] == [3, 1, 0, 2]


def test_without_sqnr_size_breaks_ties_and_failures_are_left_out() -> None:
    failed = TrialResult(4, {}, error="boom")
    trials = [trial(0, 90.0, size_bytes=300), trial(1, 90.0, size_bytes=200), failed]
    assert [t.index for t in ranked(trials)] == [1, 0]
