"""`modelc.tune`: search quantization configurations for a model, Quantune-style.

    result = modelc.tune("model.onnx", calibration="calib.npz", eval_data="eval.npz",
                         trials=24, strategy="xgb", output_dir="tune/")
    result.best_config            # a QuantConfig; tune/best.json holds it as JSON
    lib = modelc.compile("model.onnx", target="cpu-int8", calibration="calib.npz",
                         quant_config="tune/best.json")

The run: import the model once; pick the evaluation hook (evaluate.py); compile and score the
float model (the reference every loss is against); open or resume the log; let the strategy
propose configurations while the executor measures them (runner.py); if the best one still
loses more than `max_loss`, float its weakest layers (fallback.py); write best.json, the
summary and pareto.png (report.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelc.errors import Error, InputError
from modelc.tune.evaluate import Fidelity, input_specs, load_arrays, make_evaluation, split_runs
from modelc.tune.fallback import DEFAULT_STEPS, fallback_search
from modelc.tune.log import TuneLog, load_prior
from modelc.tune.objective import Goal, make_goal
from modelc.tune.report import PARETO, Progress, plot_pareto, ranked, table, write_best
from modelc.tune.runner import Search, check_executor, make_executor
from modelc.tune.space import Space, get_space
from modelc.tune.strategies import PriorRecord, get_strategy
from modelc.tune.trial import TrialResult, Workload, compile_model, measure_float

DEFAULT_TRIALS = 48
DEFAULT_STRATEGY = "xgb"


@dataclass
class TuneResult:
    """What a tuning run found. `trials` holds every trial of the log (resumed ones too), in
    the order they finished; `best` is the one with the highest objective."""

    best: TrialResult
    trials: list[TrialResult]
    goal: Goal
    float_metrics: dict[str, float]
    space: str
    evaluation: str = ""  # the hook's kind: accuracy | fidelity | callable
    output_dir: Path | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def best_config(self) -> Any:
        from modelc.passes.quantize import QuantConfig

        return QuantConfig.from_json(self.best.config)

    @property
    def float_score(self) -> float:
        return self.goal.float_score

    @property
    def loss(self) -> float:
        """The best trial's loss against the float model, in the score's units."""
        return self.goal.loss(self.best.score)

    def top(self, n: int = 5) -> list[TrialResult]:
        return ranked(self.trials)[:n]

    def table(self, top: int = 5) -> str:
        return table(self.trials, self.goal, self.float_metrics, top)


def tune(
    model: Any,
    calibration: Mapping[str, Any] | str | Path,
    *,
    eval_data: Any = None,
    evaluate: Callable[[Any], Any] | None = None,
    trials: int | None = None,
    strategy: str = DEFAULT_STRATEGY,
    space: str | Space = "quantune",
    objective: str = "accuracy",
    max_loss: float | None = None,
    max_latency_ms: float | None = None,
    workers: int | None = None,
    ray: str | None = None,
    seed: int = 0,
    patience: int | None = None,
    prior: Sequence[str | Path | PriorRecord] = (),
    fallback_steps: int = DEFAULT_STEPS,
    output_dir: str | Path | None = None,
    restart: bool = False,
    progress: bool = True,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    **import_options: Any,
) -> TuneResult:
    """Tune the post-training quantization (target cpu-int8) of `model`.

    `calibration`: {input name: samples along axis 0} or an .npz path. Scoring, by what is
    given: `eval_data` ((inputs, labels), or a dict / .npz with the inputs plus `labels`) ->
    top-1 accuracy in percent; `evaluate(lib) -> float` -> your score (higher is better);
    neither -> top-1 agreement with the float model on a held-back quarter of `calibration`.
    `trials` is the budget (default: 48 or the space size); `objective` is "accuracy",
    "latency" (needs `max_loss`, points) or "accuracy-within-latency" (needs
    `max_latency_ms`). `workers=N` runs N trials at once in local processes; `ray=ADDRESS`
    ("auto", "local", "ray://host:port") runs them as Ray tasks. With `output_dir` the run
    writes best.json, best_summary.json, log.jsonl and pareto.png there, and resumes a log it
    finds (unless `restart`). `prior`: logs of other models, for the xgb strategy's transfer.
    """
    from modelc.api import import_model

    goal = make_goal(objective, max_loss, max_latency_ms)
    sp = get_space(space)
    strategy_cls = get_strategy(strategy)
    budget = _budget(trials, sp)
    if patience is not None and patience < 1:
        raise InputError(f"patience must be >= 1 trials, got {patience}")
    prior_records = _prior(prior)
    check_executor(workers, ray, evaluate)  # before the first compile: fail fast

    graph = import_model(model, input_shapes, **import_options)
    specs = input_specs(graph)
    calib = load_arrays(calibration, "calibration")
    plan = make_evaluation(specs, calib, eval_data, evaluate)
    evaluation = plan.evaluation
    feed = evaluation.latency_feed() or split_runs(specs, plan.calibration, "calibration").runs[0]
    workload = Workload(graph, plan.calibration, evaluation, feed)

    float_lib = compile_model(workload, "cpu")
    if isinstance(evaluation, Fidelity):
        workload = dataclasses.replace(workload, evaluation=evaluation.with_reference(float_lib))
    float_trial = measure_float(float_lib, workload)
    del float_lib
    goal = dataclasses.replace(goal, float_score=float_trial.score)

    descriptor = _descriptor(graph, plan.calibration)
    header = {
        "model": _model_name(model, graph),
        "model_hash": graph_hash(graph),
        "space": sp.name,
        "strategy": strategy,
        "seed": seed,
        "objective": goal.describe(),
        "evaluation": evaluation.kind,
        "data_hash": _data_digest(workload),
        "held_back": plan.held_back,
        "descriptor": descriptor,
        "float": {"score": float_trial.score, "metrics": float_trial.metrics},
    }
    log = TuneLog.open(output_dir, header, restart)
    for t in log.trials:  # the objective may differ from the resumed run's
        t.objective = goal.value(t.score, t.metrics)
    strat = strategy_cls(sp, seed=seed, descriptor=descriptor, prior=prior_records)

    done = sum(t.kind == "search" for t in log.trials)
    bar = Progress(budget, min(done, budget), progress)
    search = Search(sp, strat, goal, log, budget, patience, lambda t: bar.update(t, goal))
    executor = make_executor(workload, workers, ray)
    try:
        search.run(executor)
        best = _best(log.trials)
        fallback_search(
            executor.run, best, goal, log, sp.name, fallback_steps, lambda t: bar.update(t, goal)
        )
    finally:
        executor.close()
        bar.close()
    best = _best(log.trials)
    result = TuneResult(
        best, log.trials, goal, float_trial.metrics, sp.name, evaluation.kind, notes=plan.notes
    )
    if log.resumed:
        result.notes.append(f"resumed {log.path}: {done} trial(s) were measured before")
    if output_dir is not None:
        _write_outputs(Path(output_dir), result, log)
    return result


def _budget(trials: int | None, sp: Space) -> int:
    if trials is None:
        return min(DEFAULT_TRIALS, sp.size())
    if trials < 1:
        raise InputError(f"trials must be >= 1, got {trials}")
    return min(trials, sp.size())


def _prior(prior: Sequence[str | Path | PriorRecord]) -> list[PriorRecord]:
    if isinstance(prior, (str, Path)):
        prior = [prior]
    records = [p for p in prior if isinstance(p, PriorRecord)]
    paths = [p for p in prior if not isinstance(p, PriorRecord)]
    return records + load_prior(paths)


def _best(trials: Sequence[TrialResult]) -> TrialResult:
    ok = ranked(trials)
    if ok:
        return ok[0]
    first = next((t for t in trials if t.error), None)
    why = f"; the first error (trial {first.index}): {first.error}" if first else ""
    raise Error(f"tune: every one of the {len(trials)} trials failed{why}")


def _descriptor(graph: Any, calibration: Mapping[str, Any]) -> dict[str, float]:
    """Model descriptors for transfer (tune/features.py); {} when they cannot be computed, since
    the search works without them, just without transfer."""
    try:
        from modelc.tune.features import model_descriptors
    except ImportError:
        return {}
    return model_descriptors(graph, calibration)


def _model_name(model: Any, graph: Any) -> str:
    if isinstance(model, (str, Path)):
        return Path(model).stem
    return str(getattr(graph, "name", "") or type(model).__name__)


def graph_hash(graph: Any) -> str:
    """Identity of a model for resuming: its IR text with constants elided, plus every
    constant's bytes (hashing the text of inlined constants would be slow on big models)."""
    import numpy as np

    from modelc.ir.printer import print_graph

    h = hashlib.sha256(print_graph(graph, constants="elide").encode())
    for c in graph.constants:
        h.update(c.name.encode())
        h.update(np.ascontiguousarray(c.data).tobytes())
    return h.hexdigest()[:16]


def _data_digest(workload: Workload) -> str:
    from modelc.tune.evaluate import data_hash

    return hashlib.sha256(
        (data_hash(workload.calibration) + workload.evaluation.digest()).encode()
    ).hexdigest()[:16]


def _write_outputs(out: Path, result: TuneResult, log: TuneLog) -> None:
    best, summary = write_best(out, result.best, result.goal, result.float_metrics)
    result.output_dir = out
    result.paths = {"best": best, "summary": summary}
    if log.path is not None:
        result.paths["log"] = log.path
    pareto = plot_pareto(
        out / PARETO, result.trials, result.goal, result.float_metrics, result.evaluation
    )
    if pareto is not None:
        result.paths["pareto"] = pareto
