"""How a tuning trial is scored: the evaluation hook.

Three hooks, picked by what the user gives (`make_evaluation`):

- labeled data (`eval_data=(inputs, labels)`, or an .npz with the inputs plus `labels`): top-1
  accuracy of the compiled library, in percent.
- a callable `evaluate(lib) -> float` (or a mapping with a "score" key and more metrics): the
  user's own measure, higher is better, in the user's own units.
- neither: fidelity to the float model on calibration samples the quantizer never sees. The
  last quarter of the calibration samples (at least one) is held back; the float model (target
  `cpu`) runs on them once, and a trial scores the top-1 agreement with those outputs in percent,
  reporting SQNR and cosine similarity too. Held-back samples keep the score honest: ranges
  calibrated on the very samples that are scored flatter the configurations that overfit them.

Scores of the built-in hooks are in percent, so "points" of loss (`--max-loss 1` = one
percentage point) mean the same thing for accuracy and agreement.

A hook is a small picklable object: the trial function ships it to worker processes and Ray
tasks with the model, so it holds arrays and plain functions, never a compiled library.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelc.errors import InputError
from modelc.passes.quant_calibrate import sqnr_db

Arrays = dict[str, np.ndarray]
Score = tuple[float, dict[str, float]]  # (score, metrics)
HOLDOUT_FRACTION = 0.25
LABELS = "labels"


@dataclass(frozen=True)
class InputSpec:
    """What a model input takes: the compiled shape and the numpy dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


def input_specs(graph: Any) -> list[InputSpec]:
    return [
        InputSpec(v.name, tuple(v.type.shape), np.dtype(v.type.dtype.numpy)) for v in graph.inputs
    ]


# ---- splitting sample arrays into feeds ---------------------------------------------------------


@dataclass(frozen=True)
class Feeds:
    """Sample arrays cut into runs of the compiled model.

    An array for input `x` compiled with shape S holds samples along axis 0, as calibration data
    does: (N, *S) is one run per row; (N * b, *S[1:]) with b = S[0] is runs of b consecutive
    rows (a short last run is padded by repeating its last row, and `valid` says how many rows of
    each run's outputs are real samples).
    """

    runs: tuple[Arrays, ...]
    valid: tuple[int | None, ...]  # real rows of each run's outputs (None: every row)

    def __len__(self) -> int:
        return len(self.runs)


def rows_per_run(spec: InputSpec, arr: np.ndarray, what: str) -> int:
    """Rows of `arr` per run: 1 for the (N, *S) layout, S[0] for (N * S[0], *S[1:]) (also 1
    when S[0] is 1); an error for anything else."""
    if arr.shape[1:] == spec.shape and arr.shape[0] > 0:
        return 1
    batched = spec.shape and arr.ndim == len(spec.shape) and arr.shape[1:] == spec.shape[1:]
    if batched and arr.shape[0] > 0:
        return spec.shape[0]
    shape = spec.shape
    raise InputError(
        f"{what} input {spec.name!r}: samples of shape {arr.shape} do not fit the model input "
        f"shape {shape}; give (N, *{shape}) or (N * {shape[0] if shape else 1}, *{shape[1:]}) "
        "arrays, samples along axis 0"
    )


def split_runs(specs: Sequence[InputSpec], arrays: Mapping[str, np.ndarray], what: str) -> Feeds:
    """Cut `arrays` (one per input name) into runs of the compiled model."""
    _require_inputs(specs, arrays, what)
    per_input: dict[str, list[np.ndarray]] = {}
    valid: list[int | None] = []
    for spec in specs:
        arr = np.asarray(arrays[spec.name])
        step = rows_per_run(spec, arr, what)
        if arr.shape[1:] == spec.shape:
            runs = [np.ascontiguousarray(r, spec.dtype) for r in arr]
            counts: list[int | None] = [None] * len(runs)
        else:
            runs, counts = [], []
            for i in range(0, arr.shape[0], step):
                chunk = arr[i : i + step]
                counts.append(len(chunk))
                if len(chunk) < step:  # pad the short last run with its last row
                    pad = np.repeat(chunk[-1:], step - len(chunk), axis=0)
                    chunk = np.concatenate([chunk, pad])
                runs.append(np.ascontiguousarray(chunk, spec.dtype))
        if per_input and len(runs) != len(next(iter(per_input.values()))):
            raise InputError(
                f"{what}: inputs hold different numbers of samples "
                f"({', '.join(f'{k}: {len(v)} runs' for k, v in per_input.items())}, "
                f"{spec.name}: {len(runs)} runs); give every input the same samples"
            )
        per_input[spec.name] = runs
        if any(c is not None for c in counts):
            valid = counts  # the batched layout pads; (N, *S) never does
    n = len(next(iter(per_input.values())))
    valid = valid or [None] * n
    return Feeds(tuple({k: v[i] for k, v in per_input.items()} for i in range(n)), tuple(valid))


def holdout_split(
    specs: Sequence[InputSpec], calibration: Mapping[str, np.ndarray]
) -> tuple[Arrays, Arrays]:
    """(calibration part, held-back part): the last quarter of the runs (at least one) is held
    back, cut at run boundaries so a batched layout stays whole."""
    _require_inputs(specs, calibration, "calibration")
    steps = {s.name: rows_per_run(s, np.asarray(calibration[s.name]), "calibration") for s in specs}
    runs = {s.name: np.asarray(calibration[s.name]).shape[0] // steps[s.name] for s in specs}
    n = min(runs.values())
    if n < 2:
        raise InputError(
            f"calibration data holds {n} sample(s); scoring without eval data holds back a "
            "quarter of the calibration samples, so give at least 2 (better 32 or more), or "
            "pass eval_data= / --eval-data, or a callable evaluate="
        )
    keep = n - max(1, int(n * HOLDOUT_FRACTION))
    calib: Arrays = {}
    held: Arrays = {}
    for s in specs:
        arr = np.asarray(calibration[s.name])
        cut = keep * steps[s.name]
        calib[s.name], held[s.name] = arr[:cut], arr[cut : n * steps[s.name]]
    return calib, held


def _require_inputs(specs: Sequence[InputSpec], arrays: Mapping[str, Any], what: str) -> None:
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise InputError(
            f"{what} has no samples for model inputs {missing} (it has {sorted(arrays)}); give "
            "one array per input name, samples along axis 0"
        )


# ---- running a library over feeds --------------------------------------------------------------


def collect(lib: Any, feeds: Feeds) -> list[np.ndarray]:
    """Every output of `lib` over all runs, real rows only, concatenated along axis 0 (an output
    without a batch axis counts as one row per run)."""
    outs: list[list[np.ndarray]] = []
    for run, valid in zip(feeds.runs, feeds.valid):
        result = lib.run(run)
        values = [np.asarray(result[spec.name]) for spec in lib.outputs]
        if not outs:
            outs = [[] for _ in values]
        for acc, v in zip(outs, values):
            v = v if v.ndim >= 2 else v[None]
            acc.append(v if valid is None else v[:valid])
    return [np.concatenate(a).astype(np.float64) for a in outs]


def top1(output: np.ndarray) -> np.ndarray:
    """Predicted class of every row (argmax over everything after axis 0)."""
    return output.reshape(output.shape[0], -1).argmax(axis=1)


def cosine(ref: np.ndarray, got: np.ndarray) -> float:
    a, b = ref.ravel(), got.ravel()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / den if den else float(np.array_equal(a, b))


# ---- the hooks ---------------------------------------------------------------------------------


class Evaluation(ABC):
    """A hook: `score(lib) -> (score, metrics)`, higher score is better."""

    kind = ""

    @abstractmethod
    def score(self, lib: Any) -> Score: ...

    def latency_feed(self) -> Arrays | None:
        """One run's inputs to time the library with (None: use a calibration run)."""
        return None

    def digest(self) -> str:
        """A hash of the data the hook scores on: a resumed log must have scored on the same."""
        return ""


class _OnHeldData(Evaluation):
    """A hook that runs the library on data it holds (`feeds`, hashed as `data_hash`); the
    subclasses are the dataclasses that declare those fields."""

    feeds: Feeds
    data_hash: str

    def latency_feed(self) -> Arrays | None:
        return self.feeds.runs[0]

    def digest(self) -> str:
        return self.data_hash


@dataclass(frozen=True)
class Accuracy(_OnHeldData):
    """Top-1 accuracy against labels, in percent."""

    feeds: Feeds
    labels: np.ndarray
    data_hash: str = ""
    kind = "accuracy"

    def score(self, lib: Any) -> Score:
        pred = top1(collect(lib, self.feeds)[0])
        if len(pred) != len(self.labels):
            raise InputError(
                f"eval data: the model predicts {len(pred)} samples but there are "
                f"{len(self.labels)} labels; give one class index per sample"
            )
        acc = 100.0 * float(np.mean(pred == self.labels))
        return acc, {"accuracy": acc}


@dataclass(frozen=True)
class Fidelity(_OnHeldData):
    """Agreement with the float model's outputs on held-back samples, in percent.

    The score is the top-1 agreement of the first output; for an output with one value per
    sample (no classes to agree on) it is 100 x the cosine similarity instead.
    """

    feeds: Feeds
    reference: tuple[np.ndarray, ...] = ()
    data_hash: str = ""
    kind = "fidelity"

    def with_reference(self, float_lib: Any) -> Fidelity:
        return Fidelity(self.feeds, tuple(collect(float_lib, self.feeds)), self.data_hash)

    def score(self, lib: Any) -> Score:
        got = collect(lib, self.feeds)
        ref = self.reference
        if not ref:
            raise RuntimeError("Fidelity.score before with_reference (a tuner bug)")
        flat_ref = np.concatenate([r.ravel() for r in ref])
        flat_got = np.concatenate([g.ravel() for g in got])
        metrics = {"sqnr_db": sqnr_db(flat_ref, flat_got), "cosine": cosine(flat_ref, flat_got)}
        if ref[0].reshape(ref[0].shape[0], -1).shape[1] > 1:
            metrics["agreement"] = 100.0 * float(np.mean(top1(ref[0]) == top1(got[0])))
            return metrics["agreement"], metrics
        return 100.0 * metrics["cosine"], metrics  # one value per sample: no classes to agree on


@dataclass(frozen=True)
class UserHook(Evaluation):
    """The user's `evaluate(lib)`: a number, or a mapping with "score" and other metrics."""

    fn: Callable[[Any], Any]
    kind = "callable"

    def score(self, lib: Any) -> Score:
        value = self.fn(lib)
        if isinstance(value, Mapping):
            if "score" not in value:
                raise InputError(
                    f"evaluate={_name(self.fn)} returned a mapping without a 'score' key; "
                    "return a number (higher is better) or {'score': x, ...other metrics}"
                )
            metrics = {str(k): float(v) for k, v in value.items() if k != "score"}
            return float(value["score"]), metrics
        try:
            return float(value), {}
        except (TypeError, ValueError):
            raise InputError(
                f"evaluate={_name(self.fn)} returned {type(value).__name__}; return a number "
                "(higher is better) or {'score': x, ...other metrics}"
            ) from None


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


# ---- choosing a hook ---------------------------------------------------------------------------


@dataclass
class EvalPlan:
    """The hook, and the calibration samples the quantizer may use (fidelity holds some back)."""

    evaluation: Evaluation
    calibration: Arrays
    held_back: int = 0  # calibration runs held back for scoring
    notes: list[str] = field(default_factory=list)


def load_arrays(src: Mapping[str, Any] | str | Path, what: str) -> Arrays:
    """A dict of arrays from a mapping or an .npz path (read fully: the file closes here)."""
    if isinstance(src, Mapping):
        return {str(k): np.asarray(v) for k, v in src.items()}
    try:
        with np.load(str(src), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise InputError(f"{what} {src}: no such file") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{what} {src}: not a readable .npz of arrays ({e})") from None


def data_hash(*groups: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for arrays in groups:
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name])
            h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()[:16]


def make_evaluation(
    specs: Sequence[InputSpec],
    calibration: Arrays,
    eval_data: Any = None,
    evaluate: Callable[[Any], Any] | None = None,
) -> EvalPlan:
    """The hook for what the user gave (see the module docstring). The fidelity hook still
    needs `with_reference(float_lib)` once the float model is compiled."""
    if eval_data is not None and evaluate is not None:
        raise InputError("give eval_data= or evaluate=, not both")
    if evaluate is not None:
        if not callable(evaluate):
            raise InputError(
                f"evaluate must be a callable evaluate(lib) -> float, got {type(evaluate).__name__}"
            )
        return EvalPlan(UserHook(evaluate), calibration)
    if eval_data is not None:
        inputs, labels = _labeled(eval_data)
        feeds = split_runs(specs, inputs, "eval data")
        return EvalPlan(Accuracy(feeds, labels, data_hash(inputs, {LABELS: labels})), calibration)
    calib, held = holdout_split(specs, calibration)
    feeds = split_runs(specs, held, "held-back calibration")
    plan = EvalPlan(Fidelity(feeds, data_hash=data_hash(held)), calib, held_back=len(feeds))
    kept = len(split_runs(specs, calib, "calibration"))
    plan.notes.append(
        f"no eval data: scoring agreement with the float model on {len(feeds)} held-back "
        f"calibration run(s); calibrating on the other {kept}"
    )
    return plan


def _labeled(eval_data: Any) -> tuple[Arrays, np.ndarray]:
    """(inputs, labels) from a tuple, or from a dict / .npz that holds `labels`."""
    if isinstance(eval_data, tuple):
        if len(eval_data) != 2:
            raise InputError(
                f"eval_data is a tuple of {len(eval_data)} items; give (inputs, labels) with "
                "inputs a dict of arrays (or an .npz path)"
            )
        inputs = load_arrays(eval_data[0], "eval data")
        labels = np.asarray(eval_data[1])
    else:
        what = f"eval data {eval_data}" if not isinstance(eval_data, Mapping) else "eval data"
        inputs = load_arrays(eval_data, "eval data")
        if LABELS not in inputs:
            raise InputError(
                f"{what}: no '{LABELS}' array (it has {sorted(inputs)}); add labels= with one "
                "class index per sample (np.savez(path, **inputs, labels=y)), or pass a callable "
                "evaluate="
            )
        labels = inputs.pop(LABELS)
    if labels.dtype.kind not in "iub":
        if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise InputError(
                f"eval labels have dtype {labels.dtype}; give integer class indices (one per "
                "sample), not one-hot rows or scores"
            )
    return inputs, labels.reshape(-1).astype(np.int64)
