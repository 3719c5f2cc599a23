"""Trials in parallel: a local process pool and Ray tasks measure the same scores as a serial
run for the same configurations, and the set-up errors (an evaluate= that cannot travel to a
worker, Ray not installed) say what to do before anything is compiled."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from tune_nets import labels_for, make_model, samples

from modelc.errors import InputError
from modelc.tune.api import tune
from modelc.tune.trial import worker_name

TRIALS = 4


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("par") / "tiny.onnx")


@pytest.fixture(scope="module")
def setup(model: Path) -> dict[str, Any]:
    """The serial run every parallel one is compared with."""
    x = samples(40, seed=2)
    kw = {
        "eval_data": {"x": x, "labels": labels_for(model, x)},
        "strategy": "grid",
        "progress": False,
    }
    serial = tune(model, {"x": samples(24, seed=1)}, trials=TRIALS, **kw)
    return {"model": model, "kw": kw, "serial": scores(serial)}


def scores(result: Any) -> dict[str, float]:
    return {",".join(t.labels.values()): t.score for t in result.trials if t.kind == "search"}


def test_process_pool_matches_serial(setup: dict[str, Any]) -> None:
    calib = {"x": samples(24, seed=1)}
    result = tune(setup["model"], calib, trials=TRIALS, workers=2, **setup["kw"])
    assert scores(result) == setup["serial"]
    assert all(t.ok for t in result.trials)
    workers = {t.worker for t in result.trials}
    assert 1 <= len(workers) <= 2 and worker_name() not in workers  # in worker processes


def test_ray_local_instance_matches_serial(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    calib = {"x": samples(24, seed=1)}
    try:
        result = tune(setup["model"], calib, trials=3, ray="local", workers=2, **setup["kw"])
        assert not ray.is_initialized()  # the tuner shuts down the instance it started
    finally:
        if ray.is_initialized():
            ray.shutdown()
    got = scores(result)
    assert len(got) == 3 and all(setup["serial"][k] == v for k, v in got.items())


def test_unpicklable_evaluate_with_workers(model: Path) -> None:
    calib = {"x": samples(24, seed=1)}
    offset = 1.0
    with pytest.raises(InputError, match="module-level function.*workers=1"):
        tune(model, calib, evaluate=lambda lib: offset, workers=2, trials=2)


def test_ray_not_installed(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(InputError, match=r"pip install 'modelc\[distributed\]'"):
        tune(model, {"x": samples(4, seed=1)}, ray="auto", trials=1)


def test_bad_workers(model: Path) -> None:
    with pytest.raises(InputError, match="workers must be >= 1"):
        tune(model, {"x": samples(4, seed=1)}, workers=0, trials=1)


def test_unreachable_ray_address_fails_fast() -> None:
    """A dead head address is an error within seconds, before anything compiles (ray.init alone
    would retry it for minutes)."""
    import socket
    import time

    from modelc.errors import InputError
    from modelc.tune.runner import check_executor

    pytest.importorskip("ray")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="cannot reach"):
        check_executor(None, f"127.0.0.1:{port}")
    with pytest.raises(InputError, match="not HOST:PORT"):
        check_executor(None, "nowhere")
    assert time.perf_counter() - t0 < 30
