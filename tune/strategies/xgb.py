"""xgb (the default) and greedy: a gradient-boosted cost model proposes what to measure next.

Quantune's idea: fit XGBoost on (configuration features, score) pairs and measure what it
predicts best, warm-started with the tuning logs of other models. The features are the
one-hot knobs plus descriptors of the model (tune/features.py), so trials of a
depthwise-heavy network teach the model about other depthwise-heavy networks.

Choices, each measured on the synthetic transfer benchmark of tune/simulate.py (five models,
each tuned with the other four as prior; plus priors built to mislead):

- Ranking, not regression. Accuracy scales do not transfer (a fragile model spans 30 points
  across configurations, a robust one 0.3), and the target's own trials only tell how its
  configurations compare with each other, never where its best lies. So every model's
  scores become ranks in [0, 1] (`normalize`; a failed trial, -inf, below all of them) and
  the model is XGBoost's rank:pairwise with one query group per model: pairs are formed
  within a model only. A regression on the same ranks needed 3.0 trials (geomean) to the
  best against 2.8, and did worse on every misleading prior.
- Trust per prior model. A prior model's group weight is how well it agrees with the
  target's trials so far (pair concordance, `PriorTrials.trust`): a model that ranks the
  target's measurements the other way round stops steering the search. Without it a prior
  anti-correlated with the target cost 31 trials instead of 8. The target's own group
  weighs `own_weight`.
- Exploration when stalled. Quantune's loop is greedy (`greedy` here, its baseline): it
  measures the top prediction every time, so an option every prior model rates badly is
  never tried on a model where it is the best. A decaying epsilon (0.1 to 0.2, halving
  every 16 trials) cost 10-30% more trials when the prior was right and won little when
  it was not (16 trials against greedy's 19). What works: an epsilon that is 0 right after
  the best improved and rises to 0.5 as trials pass without improvement, and exploration
  draws that try the best-ranked point with an option this model has never been measured
  with (a random point once all have been). That kept the cost when the prior is right
  within 3% of greedy and halved the trials when the prior hid the best option (10
  against 18).
- Cold start (no prior, few trials): random points until `n_init` trials exist, as a model
  fitted on one or two points ranks everything alike.
- Refit on every `propose` call: a few hundred rows and 60 depth-4 trees take ~15 ms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from modelc.errors import InputError
from modelc.tune.features import feature_matrix
from modelc.tune.space import Point, Space
from modelc.tune.strategies.base import PriorRecord, Strategy, register_strategy

FAILED = -0.25  # the normalized target of a failed trial: below every success


def _xgboost() -> Any:
    try:
        import xgboost
    except ImportError:
        raise InputError(
            "the xgb and greedy tuning strategies need XGBoost: pip install 'modelc[tune]' "
            "(or pick --strategy random / grid / genetic)"
        ) from None
    return xgboost


def normalize(scores: Sequence[float]) -> np.ndarray:
    """Per-model targets: the rank of each finite score among them in [0, 1] (ties share the
    mean rank; 1 = best), FAILED for -inf. A model with one finite score gets 1 for it."""
    s = np.asarray(scores, np.float64)
    out = np.full(len(s), FAILED)
    ok = np.isfinite(s)
    finite = s[ok]
    if len(finite) == 1:
        out[ok] = 1.0
    elif len(finite) > 1:
        order = np.sort(finite)
        lo = np.searchsorted(order, finite, side="left")
        hi = np.searchsorted(order, finite, side="right") - 1
        out[ok] = (lo + hi) / 2.0 / (len(finite) - 1)
    return out


@register_strategy
class XGBoostTuner(Strategy):
    name = "xgb"

    epsilon: ClassVar[float] = 0.5  # exploration probability after a long stall
    stall_half_life: ClassVar[float] = 4.0  # trials without improvement to reach epsilon / 2
    own_weight: ClassVar[float] = 4.0  # weight of the target model's trials vs prior trials
    agreement_pairs: ClassVar[float] = 4.0  # how many pairs the prior trust is worth
    n_init: ClassVar[int] = 3  # random trials before the first fit when there is no prior
    params: ClassVar[dict[str, Any]] = {
        "objective": "rank:pairwise",
        "max_depth": 4,
        "eta": 0.2,
        "min_child_weight": 1.0,
        "lambda": 1.0,
        "nthread": 1,
        "verbosity": 0,
    }
    rounds: ClassVar[int] = 60

    def __init__(
        self,
        space: Space,
        *,
        seed: int = 0,
        descriptor: Mapping[str, float] | None = None,
        prior: Sequence[PriorRecord] = (),
    ) -> None:
        super().__init__(space, seed=seed, descriptor=descriptor, prior=prior)
        self._xgb = _xgboost()
        self._keys = sorted(self.descriptor)
        self._prior = PriorTrials.encode(space, self.prior, self._keys)

    # ---- proposal ------------------------------------------------------------------------------

    def propose(self, measured: Mapping[Point, float], n: int) -> list[Point]:
        rng = np.random.default_rng([self.seed, len(measured)])
        candidates = self.unmeasured(measured)
        if n <= 0 or not candidates:
            return []
        if not len(self._prior.y) and sum(map(math.isfinite, measured.values())) < self.n_init:
            return [candidates[i] for i in rng.permutation(len(candidates))[:n]]
        predicted = self._predict(measured, candidates)
        # Best first; equal predictions in a seeded random order, not in grid order.
        ranked = [candidates[i] for i in np.lexsort((rng.random(len(predicted)), -predicted))]
        return self._pick(ranked, n, measured, rng)

    def epsilon_now(self, measured: Mapping[Point, float]) -> float:
        """The exploration probability: 0 right after the best score improved, rising towards
        `epsilon` as trials pass without improving it (`measured` is in trial order, as the
        runner and the replay keep it)."""
        scores = list(measured.values())
        if not scores or not self.epsilon:
            return 0.0
        stall = len(scores) - 1 - int(np.argmax(scores))
        return self.epsilon * (1.0 - 0.5 ** (stall / self.stall_half_life))

    def _pick(
        self,
        ranked: list[Point],
        n: int,
        measured: Mapping[Point, float],
        rng: np.random.Generator,
    ) -> list[Point]:
        """Fill n slots from the ranking; with probability epsilon a slot explores instead:
        the best-ranked point with the most options this model has never been measured
        with, or a random point once every option has been."""
        epsilon = self.epsilon_now(measured)
        seen: list[set[int]] = [set() for _ in self.space.knobs]
        rest, out = list(ranked), []
        for p in measured:
            for k, o in enumerate(p):
                seen[k].add(o)
        while rest and len(out) < n:
            i = 0
            if rng.random() < epsilon:
                novelty = [sum(o not in seen[k] for k, o in enumerate(p)) for p in rest]
                best = max(novelty)
                i = novelty.index(best) if best else int(rng.integers(len(rest)))
            out.append(rest.pop(i))
            for k, o in enumerate(out[-1]):
                seen[k].add(o)
        return out

    # ---- the cost model ------------------------------------------------------------------------

    def _predict(self, measured: Mapping[Point, float], candidates: list[Point]) -> np.ndarray:
        """Fit the ranking model on the prior trials and the target's own, score candidates.

        One query group per model (pairs are only formed within a model, so scales never
        mix); group weights are each prior model's trust and `own_weight` for the target."""
        own = list(measured)
        own_y = normalize([measured[p] for p in own])
        prior = self._prior
        trust = prior.trust(dict(zip(own, own_y)), self.agreement_pairs)
        x = np.concatenate([prior.x, feature_matrix(self.space, own, self.descriptor, self._keys)])
        sizes = [*np.bincount(prior.model, minlength=len(trust)), len(own)]
        weights = [*trust, self.own_weight]
        xgb = self._xgb
        train = xgb.DMatrix(x, label=np.concatenate([prior.y, own_y]), missing=np.nan, nthread=1)
        train.set_group([s for s in sizes if s])
        train.set_weight(np.array([w for s, w in zip(sizes, weights) if s], np.float32))
        booster = xgb.train({**self.params, "seed": self.seed}, train, self.rounds)
        test = feature_matrix(self.space, candidates, self.descriptor, self._keys)
        return booster.predict(xgb.DMatrix(test, missing=np.nan, nthread=1)).astype(np.float64)


@dataclass
class PriorTrials:
    """The prior trials this space can express: features (each row with its own model's
    descriptor: that is what lets the trees tell the models apart), per-model normalized
    targets, the model index of each row, and each model's target by point."""

    x: np.ndarray
    y: np.ndarray
    model: np.ndarray
    by_point: list[dict[Point, float]]

    @classmethod
    def encode(cls, space: Space, records: Sequence[PriorRecord], keys: list[str]) -> PriorTrials:
        by_model: dict[str, list[PriorRecord]] = {}
        for r in records:
            if space.contains(r.labels):
                by_model.setdefault(r.model, []).append(r)
        xs, ys, models, by_point = [], [], [], []
        for m, rs in enumerate(by_model.values()):
            points = [space.point(r.labels) for r in rs]
            xs += [feature_matrix(space, [p], r.descriptor, keys) for p, r in zip(points, rs)]
            y = normalize([r.score for r in rs])
            ys.append(y)
            models.append(np.full(len(rs), m))
            sums: dict[Point, list[float]] = {}
            for p, v in zip(points, y):
                sums.setdefault(p, []).append(float(v))
            by_point.append({p: float(np.mean(v)) for p, v in sums.items()})
        if not xs:
            width = len(space.feature_names()) + len(keys)
            return cls(np.zeros((0, width), np.float32), np.zeros(0), np.zeros(0, int), [])
        return cls(np.concatenate(xs), np.concatenate(ys), np.concatenate(models), by_point)

    def trust(self, own: Mapping[Point, float], pairs_prior: float) -> np.ndarray:
        """Weight of each prior model's trials: how well its ranking of the points measured
        so far agrees with the target's: 2 * concordance - 1 floored at 0 (scaled to 1 before
        any evidence), where the concordance of pairs starts from a prior belief of 3/4 worth
        `pairs_prior` pairs."""
        out = np.zeros(len(self.by_point))
        for m, table in enumerate(self.by_point):
            common = [p for p in own if p in table]
            a = np.array([own[p] for p in common])
            b = np.array([table[p] for p in common])
            da = np.sign(a[:, None] - a[None, :])
            db = np.sign(b[:, None] - b[None, :])
            agree = float(np.sum(np.triu(da * db, 1) > 0))
            disagree = float(np.sum(np.triu(da * db, 1) < 0))
            concordance = (agree + 0.75 * pairs_prior) / (agree + disagree + pairs_prior)
            out[m] = max(0.0, 2.0 * concordance - 1.0) / 0.5  # 1 before any evidence
        return out


@register_strategy
class GreedyTuner(XGBoostTuner):
    """Quantune's loop: the same cost model, always measuring its best predictions."""

    name = "greedy"
    epsilon: ClassVar[float] = 0.0
