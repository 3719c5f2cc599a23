"""The figure of docs/quantization.md: measurements to reach the exhaustive best, per model and
strategy, one panel per space (docs/img/quantune_trials.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from quantune_replay import TOLERANCE, Run

from modelc.tune.space import get_space


def plot(path: Path, runs: dict[str, list[Run]], models: list[str]) -> Path | None:
    """Mean trials to reach the target per model and strategy, one panel per space."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter, ScalarFormatter
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 3.8), squeeze=False)
    for ax, (space, rs) in zip(axes[0], runs.items()):
        strategies = list(dict.fromkeys(r.strategy for r in rs))
        width = 0.8 / len(strategies)
        for i, s in enumerate(strategies):
            means = [
                np.mean([r.trials for r in rs if r.strategy == s and r.model == m]) for m in models
            ]
            ax.bar(np.arange(len(models)) + i * width, means, width, label=s)
        ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models, fontsize=8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks([1, 2, 5, 10, 20, 50])
        ax.set_ylabel(f"trials to within {TOLERANCE} pt")
        ax.set_title(f"{space} space ({get_space(space).size()} configurations)")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle("Measurements to reach the exhaustive best (mean over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
