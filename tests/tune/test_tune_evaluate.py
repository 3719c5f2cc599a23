"""The tuner's evaluation hooks: top-1 accuracy against labels (checked against onnxruntime and
against running the library by hand), a user's callable, and the default fidelity score on
calibration samples held back from the quantizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tune_nets import CLASSES, float_logits, labels_for, make_model, samples

import modelc
from modelc.api import import_model
from modelc.errors import InputError
from modelc.tune import trial as trial_mod
from modelc.tune.api import tune
from modelc.tune.evaluate import (
    Fidelity,
    UserHook,
    input_specs,
    make_evaluation,
    split_runs,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("eval") / "tiny.onnx")


def specs(path: Path) -> Any:
    return input_specs(import_model(path))


def test_accuracy_matches_onnxruntime_and_a_hand_loop(model: Path) -> None:
    x = samples(30, seed=2)
    y = labels_for(model, x)
    calib = {"x": samples(8, seed=1)}
    plan = make_evaluation(specs(model), calib, eval_data={"x": x, "labels": y})
    assert plan.calibration is calib and plan.held_back == 0
    flib = modelc.compile(model, target="cpu")
    score, metrics = plan.evaluation.score(flib)
    want = 100.0 * np.mean(float_logits(model, x).argmax(axis=1) == y)
    assert score == pytest.approx(want) == pytest.approx(80.0)  # every fifth label is moved
    assert metrics == {"accuracy": score}

    qlib = modelc.compile(model, target="cpu-int8", calibration=calib)
    by_hand = 100.0 * np.mean([int(np.argmax(qlib(x[i : i + 1]))) == y[i] for i in range(30)])
    assert plan.evaluation.score(qlib)[0] == pytest.approx(by_hand)
    # (N, *shape) rows and a (inputs, labels) tuple score the same
    again = make_evaluation(specs(model), calib, eval_data=({"x": x[:, None]}, y))
    assert again.evaluation.score(qlib)[0] == pytest.approx(by_hand)


def test_batched_model_pads_the_last_run(model: Path, tmp_path: Path) -> None:
    batched = make_model(tmp_path / "b4.onnx", batch=4)  # same seed: same weights
    x = samples(30, seed=2)
    y = labels_for(model, x)
    feeds = split_runs(specs(batched), {"x": x}, "eval data")
    assert len(feeds) == 8 and feeds.valid[-1] == 2  # 7 full runs of 4, then 2 samples
    plan = make_evaluation(specs(batched), {"x": x[:8]}, eval_data={"x": x, "labels": y})
    score, _ = plan.evaluation.score(modelc.compile(batched, target="cpu"))
    assert score == pytest.approx(80.0)


def test_eval_data_errors(model: Path) -> None:
    s, calib = specs(model), {"x": samples(8, seed=1)}
    x = samples(10, seed=2)
    with pytest.raises(InputError, match="no 'labels' array"):
        make_evaluation(s, calib, eval_data={"x": x})
    with pytest.raises(InputError, match="integer class indices"):
        make_evaluation(s, calib, eval_data={"x": x, "labels": np.full(10, 0.5)})
    with pytest.raises(InputError, match="do not fit"):
        make_evaluation(s, calib, eval_data={"x": x[:, :2], "labels": np.zeros(10, int)})
    with pytest.raises(InputError, match="not both"):
        make_evaluation(s, calib, eval_data={"x": x}, evaluate=lambda lib: 0.0)
    short = make_evaluation(s, calib, eval_data={"x": x, "labels": np.zeros(9, int)})
    with pytest.raises(InputError, match="predicts 10 samples but there are 9 labels"):
        short.evaluation.score(modelc.compile(model, target="cpu"))


def test_callable_hook(model: Path) -> None:
    seen: list[str] = []

    def hook(lib: Any) -> dict[str, float]:
        seen.append(lib.target)
        out = lib(samples(1, seed=5))
        return {"score": -float(np.abs(out).sum()), "classes": float(out.shape[-1])}

    result = tune(
        model, {"x": samples(8, seed=1)}, evaluate=hook, trials=2, strategy="grid", progress=False
    )
    assert seen == ["cpu", "cpu-int8", "cpu-int8"]  # the float reference first
    assert result.evaluation == "callable"
    assert all(t.metrics["classes"] == CLASSES for t in result.trials)
    flib = modelc.compile(model, target="cpu")
    assert result.float_score == pytest.approx(-float(np.abs(flib(samples(1, seed=5))).sum()))
    with pytest.raises(InputError, match="without a 'score' key"):
        UserHook(lambda lib: {"accuracy": 1.0}).score(None)
    with pytest.raises(InputError, match="return a number"):
        UserHook(lambda lib: "good").score(None)


def test_fidelity_scores_only_held_back_samples(model: Path, monkeypatch: Any) -> None:
    calib = samples(12, seed=1)
    calib[9:] *= 1000.0  # held back: if these reached calibration, every range would explode
    plan = make_evaluation(specs(model), {"x": calib})
    assert plan.held_back == 3
    assert np.array_equal(plan.calibration["x"], calib[:9])
    assert isinstance(plan.evaluation, Fidelity)
    held = np.concatenate([f["x"] for f in plan.evaluation.feeds.runs])
    assert np.array_equal(held, calib[9:])

    largest: list[float] = []
    real = trial_mod.compile_model

    def spy(workload: Any, target: str, cfg: Any = None) -> Any:
        if target == "cpu-int8":
            largest.append(max(float(np.abs(a).max()) for a in workload.calibration.values()))
        return real(workload, target, cfg)

    monkeypatch.setattr(trial_mod, "compile_model", spy)
    result = tune(model, {"x": calib}, trials=2, strategy="grid", progress=False)
    assert len(largest) == 2 and max(largest) < 100.0
    assert result.float_score == 100.0 and result.evaluation == "fidelity"
    for t in result.trials:
        assert {"agreement", "sqnr_db", "cosine"} <= set(t.metrics) and t.ok
        assert t.score == t.metrics["agreement"]
    assert any("held-back" in n for n in result.notes)
    with pytest.raises(InputError, match="at least 2"):
        make_evaluation(specs(model), {"x": calib[:1]})
