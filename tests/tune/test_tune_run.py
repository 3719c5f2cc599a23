"""`modelc.tune` end to end in one process: the outputs of a run, best.json compiling back into
the configuration that scored best, resuming without re-measuring, and the per-layer float
fallback when the best configuration loses too much."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tune_nets import labels_for, make_model, samples

import modelc
from modelc.errors import InputError
from modelc.tune import trial as trial_mod
from modelc.tune.api import tune
from modelc.tune.log import LOG_NAME, read_log


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("run") / "tiny.onnx")


@pytest.fixture(scope="module")
def data(model: Path) -> dict[str, Any]:
    x = samples(40, seed=2)
    return {"calib": {"x": samples(24, seed=1)}, "eval": {"x": x, "labels": labels_for(model, x)}}


def count_int8_compiles(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    real = trial_mod.compile_model

    def spy(workload: Any, target: str, cfg: Any = None) -> Any:
        if target != "cpu":
            seen.append(cfg)
        return real(workload, target, cfg)

    monkeypatch.setattr(trial_mod, "compile_model", spy)
    return seen


def test_serial_run_outputs_and_best_compiles(
    model: Path, data: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "tune"
    kw = {"eval_data": data["eval"], "strategy": "grid", "progress": False, "output_dir": out}
    result = tune(model, data["calib"], trials=3, **kw)
    assert {p.name for p in out.iterdir()} >= {
        "best.json",
        "best_summary.json",
        "log.jsonl",
        "pareto.png",
    }
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header, trials = read_log(out / LOG_NAME)
    assert header["model"] == "tiny" and header["space"] == "quantune"
    assert header["strategy"] == "grid" and header["float"]["score"] == pytest.approx(80.0)
    assert len(trials) == 3 and all(t.ok for t in trials)
    for t in trials:
        assert {"accuracy", "latency_ms", "size_bytes"} <= set(t.metrics)
        assert set(t.layers_sqnr) == {"conv1", "conv2", "fc"} and t.seconds > 0
    best = result.best
    assert best.score == max(t.score for t in trials)
    assert result.float_score == pytest.approx(80.0) and result.loss == 80.0 - best.score
    summary = json.loads((out / "best_summary.json").read_text())
    assert summary["trial"] == best.index and summary["score"] == best.score
    assert "rank" in result.table() and "float model" in result.table()

    # best.json is the configuration: compiling with it scores what the trial scored
    lib = modelc.compile(
        model, target="cpu-int8", calibration=data["calib"], quant_config=out / "best.json"
    )
    x, y = data["eval"]["x"], data["eval"]["labels"]
    acc = 100.0 * np.mean([int(np.argmax(lib(x[i : i + 1]))) == y[i] for i in range(len(y))])
    assert acc == pytest.approx(best.score)
    assert lib.manifest["pass_reports"]["quantize"]["config"] == best.config


def test_resume_and_restart(
    model: Path, data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "tune"
    kw = {"eval_data": data["eval"], "strategy": "grid", "progress": False, "output_dir": out}
    compiled = count_int8_compiles(monkeypatch)
    tune(model, data["calib"], trials=2, **kw)
    # resume: the 2 measured points are not compiled again, 1 new one is
    again = tune(model, data["calib"], trials=3, **kw)
    assert len(compiled) == 3 and len(again.trials) == 3
    assert sorted(t.index for t in again.trials) == list(range(3))
    assert any("resumed" in n for n in again.notes)
    # the same log under another objective: the fastest trial wins, nothing is compiled
    fastest = tune(model, data["calib"], trials=3, objective="latency", max_loss=100.0, **kw)
    assert len(compiled) == 3
    lat = [t.metrics["latency_ms"] for t in fastest.trials]
    assert fastest.best.metrics["latency_ms"] == min(lat)

    # another model in the same folder: refused unless restart
    other = make_model(tmp_path / "other.onnx", seed=7)
    with pytest.raises(InputError, match="another model.*--restart"):
        tune(other, data["calib"], trials=1, **kw)
    fresh = tune(other, data["calib"], trials=1, restart=True, **kw)
    assert len(fresh.trials) == 1 and len(read_log(out / LOG_NAME)[1]) == 1


def test_fallback_floats_weak_layers(
    model: Path, data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = count_int8_compiles(monkeypatch)
    # per-tensor weights from one calibration sample lose accuracy; 0 points of loss accepted
    result = tune(
        model,
        data["calib"],
        eval_data=data["eval"],
        trials=1,
        strategy="grid",
        max_loss=0.0,
        fallback_steps=3,
        progress=False,
        output_dir=tmp_path,
    )
    search = [t for t in result.trials if t.kind == "search"]
    steps = [t for t in result.trials if t.kind == "fallback"]
    assert len(search) == 1 and search[0].score < result.float_score
    assert 1 <= len(steps) <= 3 and len(compiled) == 1 + len(steps)
    # each step floats the quantized layer with the lowest SQNR in the step before it
    before = search[0]
    for step in steps:
        (new,) = set(step.fallback) - set(before.fallback)
        assert new == min(before.layers_sqnr, key=before.layers_sqnr.get)
        assert new not in step.layers_sqnr
        before = step
    assert steps[-1].score == result.float_score or len(steps) == 3
    assert result.best.score == max(t.score for t in result.trials)
    best_json = json.loads((tmp_path / "best.json").read_text())
    assert best_json["fallback"] == result.best.fallback
