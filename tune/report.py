"""What a tuning run shows and leaves behind: the progress bar, the top-5 table, the Pareto
plot, and best.json / best_summary.json.

tqdm and matplotlib are imported lazily (they are the `tune` extra): without tqdm there is no
bar, without matplotlib no plot (a warning says how to get it); the tuning itself never needs
either.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelc.tune.log import clean
from modelc.tune.objective import Goal
from modelc.tune.trial import TrialResult

BEST = "best.json"
SUMMARY = "best_summary.json"
PARETO = "pareto.png"
SCORE_LABELS = {  # the y axis, by evaluation hook
    "accuracy": "top-1 accuracy (%)",
    "fidelity": "agreement with the float model (%)",
    "callable": "score (your evaluate)",
}


class Progress:
    """A tqdm bar on stderr: trials done / budget and the best score so far. When stderr is not
    a terminal (logs, CI) a plain line per trial instead, so a long run still shows progress in
    a log file; nothing with `enabled=False`."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar: Any = None
        self.lines = False
        self.done, self.total = initial, total
        self.best, self.best_score = -math.inf, math.nan
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        if tqdm is None or not sys.stderr.isatty():
            self.lines = True
            return
        self.bar = tqdm(total=total, initial=initial, desc="tune", unit="trial", file=sys.stderr)

    def update(self, trial: TrialResult, goal: Goal) -> None:
        if trial.ok and trial.objective > self.best:
            self.best = trial.objective
            self.best_score = trial.score
        if trial.kind != "search":  # fallback steps come on top of the budget
            self.total += 1
        self.done += 1
        if self.lines:
            self._line(trial, goal)
        if self.bar is None:
            return
        if trial.kind != "search":
            self.bar.total += 1
        if math.isfinite(self.best):
            loss = goal.loss(self.best_score)
            self.bar.set_postfix(best=f"{self.best_score:.4g}", loss=f"{loss:.3g}", refresh=False)
        self.bar.update(1)

    def _line(self, trial: TrialResult, goal: Goal) -> None:
        what = ",".join(f"{k}={v}" for k, v in trial.labels.items()) or trial.kind
        got = f"score {trial.score:.4g}" if trial.ok else "failed"
        best = ""
        if math.isfinite(self.best):
            best = f" | best {self.best_score:.4g} (loss {goal.loss(self.best_score):.3g})"
        print(f"tune: [{self.done}/{self.total}] {got} {what}{best}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def ranked(trials: Sequence[TrialResult]) -> list[TrialResult]:
    """Successful trials, best objective first. Ties: higher output SQNR against the float
    model (the fidelity score's metric: top-1 agreement on a few held-back samples ties often,
    and SQNR still tells the configurations apart), then fewer bytes, then lower latency."""
    ok = [t for t in trials if t.ok]
    return sorted(
        ok,
        key=lambda t: (
            -t.objective,
            -t.metrics.get("sqnr_db", -math.inf),
            t.metrics.get("size_bytes", math.inf),
            t.metrics.get("latency_ms", math.inf),
            t.index,
        ),
    )


def config_key(t: TrialResult) -> str:
    key = ",".join(f"{k}={v}" for k, v in t.labels.items())
    fb = t.fallback
    return f"{key} +float:{'|'.join(fb)}" if fb else key


def table(
    trials: Sequence[TrialResult], goal: Goal, float_metrics: dict[str, float], top: int = 5
) -> str:
    """The top configurations, plus the float model as the reference row."""
    head = f"{'rank':>4}  {'score':>8}  {'loss':>7}  {'latency ms':>10}  {'size':>10}  config"
    rows = [head]
    for rank, t in enumerate(ranked(trials)[:top], 1):
        rows.append(
            f"{rank:>4}  {t.score:>8.3f}  {goal.loss(t.score):>7.3f}  "
            f"{_num(t.metrics.get('latency_ms'), '.4f'):>10}  "
            f"{_num(t.metrics.get('size_bytes'), ',.0f'):>10}  {config_key(t)} (trial {t.index})"
        )
    rows.append(
        f"{'-':>4}  {goal.float_score:>8.3f}  {0.0:>7.3f}  "
        f"{_num(float_metrics.get('latency_ms'), '.4f'):>10}  "
        f"{_num(float_metrics.get('size_bytes'), ',.0f'):>10}  float model (target cpu)"
    )
    failed = sum(not t.ok for t in trials)
    if failed:
        rows.append(f"{failed} of {len(trials)} trials failed (errors in the log)")
    return "\n".join(rows)


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -math.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def plot_pareto(
    path: Path,
    trials: Sequence[TrialResult],
    goal: Goal,
    float_metrics: dict[str, float],
    evaluation: str = "",
) -> Path | None:
    """Score against weight bytes and against latency, every successful trial, the Pareto front
    highlighted, the float model as a star. None (and a warning) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "modelc: warning: no pareto.png (matplotlib is missing): pip install 'modelc[tune]'",
            file=sys.stderr,
        )
        return None
    ok = [t for t in trials if t.ok]
    axes_spec = [("size_bytes", "weights (bytes)"), ("latency_ms", "latency (ms)")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (metric, label) in zip(axes, axes_spec):
        pts = [(t.metrics[metric], t.score) for t in ok if metric in t.metrics]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=18, c="#9aa5b1", label="trials")
            front = pareto_front(pts)
            fx, fy = zip(*(pts[i] for i in front))
            ax.plot(fx, fy, "o-", c="#d9480f", ms=5, drawstyle="steps-post", label="Pareto front")
        if metric in float_metrics and math.isfinite(goal.float_score):
            ax.scatter(
                [float_metrics[metric]],
                [goal.float_score],
                marker="*",
                s=160,
                c="#1c7ed6",
                label="float model",
                zorder=3,
            )
        ax.set_xlabel(label)
        ax.set_ylabel(SCORE_LABELS.get(evaluation, "score"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"quantization tuning: {len(ok)} configurations")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_best(
    directory: Path, best: TrialResult, goal: Goal, float_metrics: dict[str, float]
) -> tuple[Path, Path]:
    """best.json (the QuantConfig, for `modelc compile --quant-config`) and best_summary.json
    (its score, loss, metrics and trial)."""
    from modelc.passes.quantize import QuantConfig

    best_path = directory / BEST
    best_path.write_text(QuantConfig.from_json(best.config).to_json() + "\n")
    summary = {
        "trial": best.index,
        "kind": best.kind,
        "labels": best.labels,
        "score": best.score,
        "loss": goal.loss(best.score),
        "objective": goal.describe(),
        "objective_value": best.objective,
        "metrics": best.metrics,
        "float": {"score": goal.float_score, "metrics": float_metrics},
        "config": best.config,
    }
    summary_path = directory / SUMMARY
    summary_path.write_text(json.dumps(clean(summary), indent=2) + "\n")
    return best_path, summary_path
