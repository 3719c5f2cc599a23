"""docs/quantization.md of the Quantune benchmark: tables of what bench/quantune.py measured.

Every number in the page comes from the run that writes it (the cached exhaustive tables are
measurements of an earlier run of the same script; the page says how long that took). Nothing
here measures: it formats `Results`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from quantune_measure import Table
from quantune_replay import SMALL_BUDGET, TOLERANCE, Run, geomean, ratio

from modelc.tune.space import Point, Space, get_space

FLAT = 2.0  # points: an int8 space whose worst configuration loses less is called flat

MOTIFS = {
    "resnet": "basic blocks: 3x3 conv-BN pairs, residual adds, strided 1x1 shortcut",
    "mobilenetv2": "inverted residuals: 1x1 expand, 3x3 depthwise, ReLU6, linear bottleneck",
    "squeezenet": "fire modules (squeeze, 1x1 + 3x3 expand, concat), no BN, conv classifier",
    "shufflenet": "ShuffleNetV2 units: channel split, depthwise 3x3, concat, channel shuffle",
    "googlenet": "inception blocks: 1x1, 1x1-3x3, 1x1-3x3, pool-1x1 branches, concat",
}


@dataclass
class Results:
    """Everything the page shows."""

    models: dict[str, Any]  # name -> quantune_zoo.ZooModel
    data: dict[str, Any]  # data.json of the cache
    tables: dict[str, dict[str, Table]]  # space -> model -> table
    runs: dict[str, list[Run]]  # space -> replays
    seeds: int
    qdq: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> numbers
    machine: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> seconds of this run
    # space -> tolerance (points) -> replays of random and xgb+transfer at that tolerance
    sensitivity: dict[str, dict[float, list[Run]]] = field(default_factory=dict)


# ---- numbers -------------------------------------------------------------------------------------


def fixed_best(tables: dict[str, Table]) -> Point:
    """The one configuration with the best mean top-1 over every model (failures count as 0)."""
    space = get_space(next(iter(tables.values())).space)

    def mean(p: Point) -> float:
        vals = [t.top1.get(p, -math.inf) for t in tables.values()]
        return float(np.mean([v if math.isfinite(v) else 0.0 for v in vals]))

    return max(space.points(), key=mean)


def best_point(t: Table, where: dict[str, str] | None = None) -> Point | None:
    """The best point of a table (first in grid order among ties), optionally among the points
    whose labels include `where`."""
    space = get_space(t.space)
    pts = [
        p
        for p in space.points()
        if p in t.top1
        and math.isfinite(t.top1[p])
        and all(space.labels(p)[k] == v for k, v in (where or {}).items())
    ]
    return max(pts, key=lambda p: t.top1[p]) if pts else None


def near_best(t: Table) -> int:
    """How many configurations are within TOLERANCE of the table's best."""
    return sum(s >= t.best - TOLERANCE - 1e-9 for s in t.ok().values())


def oracle_ratio(tables: dict[str, Table]) -> float:
    """Geometric mean over models of random's expected trials to reach the target: the
    random / strategy ratio of a strategy whose first proposal always reaches it."""
    return geomean([(len(t.top1) + 1) / (near_best(t) + 1) for t in tables.values()])


def _fmt(x: float, nd: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list[Any]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(head) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return [_row(head), _row(sep), *(_row(r) for r in rows), ""]


def _labels(space: Space, p: Point | None) -> str:
    if p is None:
        return "n/a"
    return ", ".join(f"{v}" for v in space.labels(p).values())


# ---- sections ------------------------------------------------------------------------------------


def models_section(res: Results) -> list[str]:
    q = res.tables["quantune"]
    rows = [
        [
            f"`{name}`",
            MOTIFS[name],
            f"{m.params:,}",
            _fmt(100 * m.clean_top1),
            _fmt(100 * m.float_top1),
            _fmt(q[name].float_top1) if name in q else "n/a",
            _fmt(m.train_seconds, 1),
        ]
        for name, m in res.models.items()
    ]
    head = ["model", "motif", "params", "clean digits (torch)", "test (torch)", "test (modelc cpu)"]
    return _table([*head, "train s"], rows, "llrrrrr")


def exhaustive_section(res: Results, space_name: str) -> list[str]:
    tables = res.tables[space_name]
    space = get_space(space_name)
    fixed = fixed_best(tables)
    rows = []
    for name, t in tables.items():
        ok = t.ok()
        bp = best_point(t)
        near = near_best(t)
        rows.append(
            [
                f"`{name}`",
                _fmt(t.float_top1),
                _fmt(t.best),
                _fmt(t.float_top1 - t.best),
                _fmt(min(ok.values()) if ok else math.nan),
                f"{near}/{len(t.top1)}",
                _fmt((len(t.top1) + 1) / (near + 1), 1),
                _fmt(t.float_top1 - t.top1.get(fixed, -math.inf)),
                _fmt(statistics.median(t.seconds.values()), 1),
                _fmt(sum(t.seconds.values()), 0),
                _labels(space, bp),
            ]
        )
    head = [
        "model",
        "float",
        "best int8" if space_name == "quantune" else "best",
        "loss",
        "worst",
        f"within {TOLERANCE}",
        "random's expected trials",
        "loss of fixed config",
        "s / trial",
        "s total",
        "best configuration (" + ", ".join(k.name for k in space.knobs) + ")",
    ]
    out = _table(head, rows, "lrrrrrrrrrl")
    out.append(
        f"Within {TOLERANCE}: configurations that count as reaching the exhaustive best. "
        "Random search needs (N + 1) / (k + 1) measurements on average to hit one of k good "
        "configurations among N, and no strategy needs fewer than 1: that quotient bounds the "
        "random / strategy ratio any strategy can score on the model. "
        f"Fixed config = the single configuration with the best mean top-1 over the five "
        f"models: {_labels(space, fixed)}. Failed configurations: "
        + (", ".join(f"{n}: {len(t.errors)}" for n, t in tables.items() if t.errors) or "none")
        + "."
    )
    out.append("")
    return out


def knob_section(res: Results, space_name: str) -> list[str]:
    """For each option: loss of the best configuration that uses it, per model."""
    tables = res.tables[space_name]
    space = get_space(space_name)
    rows = []
    for k in space.knobs:
        for o in k.options:
            cells = []
            for t in tables.values():
                p = best_point(t, {k.name: o.label})
                cells.append(_fmt(t.float_top1 - t.top1[p]) if p is not None else "fails")
            rows.append([f"{k.name}={o.label}", *cells])
    return _table(["option", *tables], rows)


def strategy_section(res: Results, space_name: str) -> list[str]:
    runs = res.runs[space_name]
    tables = res.tables[space_name]
    strategies = list(dict.fromkeys(r.strategy for r in runs))
    rows = []
    for s in strategies:
        cells: list[Any] = [f"`{s}`"]
        for m in tables:
            mine = [r for r in runs if r.strategy == s and r.model == m]
            trials, secs = np.mean([r.trials for r in mine]), np.mean([r.seconds for r in mine])
            cells.append(f"{trials:.1f} / {secs:.0f}s")
        cells.append(_fmt(ratio(runs, "random", s), 2))
        cells.append(_fmt(ratio(runs, "random", s, what="seconds"), 2))
        rows.append(cells)
    head = ["strategy", *tables, "random / strategy: trials", "wall time"]
    out = _table(head, rows)
    never = [r for r in runs if not r.reached]
    out.append(
        f"Cells: mean over {res.seeds} seeds (grid: one order) of the measurements needed to "
        f"reach a configuration within {TOLERANCE} points of the exhaustive best / the wall "
        "time they cost (recorded trial seconds + the strategy's own propose time). "
        + (
            f"{len(never)} runs never reached it and count as space size + 1."
            if never
            else "Every run reached it."
        )
    )
    out.append("")
    return out


def budget_section(res: Results, space_name: str) -> list[str]:
    runs = res.runs[space_name]
    tables = res.tables[space_name]
    strategies = list(dict.fromkeys(r.strategy for r in runs))
    rows = []
    for m, t in tables.items():
        cells: list[Any] = [f"`{m}`", _fmt(t.float_top1 - t.best)]
        for s in strategies:
            losses = [t.float_top1 - r.best_small for r in runs if r.model == m and r.strategy == s]
            cells.append(f"{np.mean(losses):.2f} (max {max(losses):.2f})")
        rows.append(cells)
    return _table(["model", "exhaustive best", *strategies], rows)


def w4a8_section(res: Results) -> list[str]:
    tables = res.tables.get("w4a8", {})
    if not tables:
        return ["W4A8 was not measured in this run.", ""]
    fixed = fixed_best(tables)
    rows = []
    for m, t in tables.items():
        cells = [f"`{m}`", _fmt(t.float_top1), _fmt(t.best), _fmt(t.float_top1 - t.best)]
        cells.append(_fmt(t.float_top1 - t.top1.get(fixed, -math.inf)))
        for knob, label in (
            ("rounding", "nearest"),
            ("rounding", "gptq"),
            ("bias_correction", "off"),
            ("bias_correction", "on"),
        ):
            p = best_point(t, {knob: label})
            cells.append(_fmt(t.float_top1 - t.top1[p]) if p is not None else "fails")
        plain = best_point(t, {"rounding": "nearest", "bias_correction": "off"})
        cells.append(_fmt(t.float_top1 - t.top1[plain]) if plain is not None else "fails")
        cells.append(_labels(get_space("w4a8"), best_point(t)))
        rows.append(cells)
    head = [
        "model",
        "float",
        "best W4A8",
        "loss",
        "loss of fixed config",
        "loss, nearest",
        "loss, gptq",
        "loss, bias corr. off",
        "loss, bias corr. on",
        "loss, nearest + no bias corr.",
        "best configuration",
    ]
    out = _table(head, rows, "lrrrrrrrrrl")
    out += [f"Fixed config (best mean over the models): {_labels(get_space('w4a8'), fixed)}.", ""]
    return out


def qdq_section(res: Results) -> list[str]:
    if not res.qdq:
        return ["The QDQ export was not checked in this run.", ""]
    rows = [
        [
            f"`{m}`",
            _fmt(d["modelc"]),
            _fmt(d["onnxruntime"]),
            _fmt(d["agreement"]),
            d["config"],
        ]
        for m, d in res.qdq.items()
    ]
    head = ["model", "modelc cpu-int8 top-1", "onnxruntime QDQ top-1", "same class %", "config"]
    return _table(head, rows, "lrrrl")


# ---- the page ------------------------------------------------------------------------------------


def write(path: Path, res: Results, plots: list[Path]) -> None:
    d = res.data
    a = d["augment"]
    q = res.runs.get("quantune", [])
    xgb_ratio = ratio(q, "random", "xgb+transfer")
    lines = [
        "# Quantization tuning: the Quantune benchmark",
        "",
        "`modelc.tune` searches post-training quantization configurations (calibration, scheme, "
        "clipping, granularity, ...) per model, the way Quantune does: a gradient-boosted cost "
        "model, warm-started with other models' measurements, proposes the next configuration to "
        "compile and score. This page is written by `bench/quantune.py` from one run of it; "
        "rerun with",
        "",
        "```",
        ".venv/bin/python bench/quantune.py            # reuses build/quantune/ if present",
        ".venv/bin/python bench/quantune.py --retrain  # retrain the zoo and remeasure all",
        "```",
        "",
        f"Machine: {res.machine}. This run: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in res.seconds.items())
        + ". The exhaustive tables hold "
        + " and ".join(
            f"{sum(len(t.top1) for t in ts.values())} {space} trials "
            f"({sum(sum(t.seconds.values()) for t in ts.values()) / 60:.0f} trial-minutes)"
            for space, ts in res.tables.items()
        )
        + ", measured in parallel by the tuner's worker processes. Those measurements may come "
        "from an earlier run (they are cached in `build/quantune/tune/<model>.<space>/log.jsonl`) "
        "and the trial seconds below are theirs. "
        "The machine is shared and noisy: seconds are indicative, counts of trials are exact.",
        "",
        "## Summary",
        "",
        f"- Zoo: five CNNs of Quantune's families trained here on scikit-learn digits; float "
        f"top-1 {_range_pct(res)} on {d['test_samples']:,} held-out test images.",
        f"- Exhaustive int8 search (Quantune's 48 configurations): accuracy loss of the best "
        f"configuration {_loss_range(res.tables['quantune'])} points top-1.",
        f"- Measurements to reach within {TOLERANCE} points of the exhaustive best, geometric mean "
        f"over models and {res.seeds} seeds: random / xgb+transfer = **{_fmt(xgb_ratio)}x** "
        "on the int8 space (Quantune reports 3.9x on its ImageNet data). A strategy that always "
        "hit on its first measurement would score "
        f"{_fmt(oracle_ratio(res.tables['quantune']))}x on these tables (see the "
        "`random's expected trials` column).",
        *_int8_spread(res.tables["quantune"]),
        *_w4a8_summary(res),
        "",
        "## Method",
        "",
        f"**Data.** scikit-learn's `load_digits` (1,797 8x8 images, 16 gray levels; offline), "
        f"upscaled bilinearly to 1x{d['image']}x{d['image']} and scaled to [-1, 1]. One seeded, "
        f"class-stratified split of the *source digits*: {d['train_digits']} train, "
        f"{d['calib_digits']} calibration, {d['test_digits']} test. Training augments its own "
        f"digits afresh each epoch (rotation +-{a['rotate']:g} degrees, scale "
        f"{1 - a['scale']:g}-{1 + a['scale']:g}, shift +-{a['shift']:g} pixels, Gaussian pixel "
        f"noise sigma {a['noise']:g} on [0, 1] images). Calibration = one augmented view of "
        f"each calibration digit ({d['calib_samples']} images). Test = each test digit plus "
        f"{d['test_views'] - 1} augmented views ({d['test_samples']:,} images; one image = "
        f"{100 / d['test_samples']:.3f} points). No view of a training digit is ever in the "
        "calibration or test sets. Why so hard a distribution: on near-clean digits the nets "
        "are 98-99% right with wide margins and nearly every int8 configuration ties with the "
        "best within a few images (bench/quantune_zoo.py's docstring has the numbers of a first, "
        "milder version of this zoo), which makes every search look perfect and says nothing. "
        "Deformed, noisy digits give smaller margins (as on ImageNet) and heavier-tailed "
        "activations, so the configurations spread. Why views at all: 500 digits cannot resolve "
        "0.1 points. Views of one digit are correlated, so differences of a few images between "
        "configurations are resolution, not significance.",
        "",
        "**Models.** Built and trained by `bench/quantune_zoo.py` / `bench/quantune_nets.py` "
        "(seeded, one thread: the same ONNX bytes every time), exported with the TorchScript "
        "exporter at opset 17, batch 1, BatchNorm folded. Batch 1 keeps Quantune's calibration "
        "sizes meaningful (one calibration sample is one image).",
        "",
        *models_section(res),
        "**Measurements.** For every model and every configuration of a space, "
        '`modelc.tune(model, calibration=calib.npz, eval_data=eval.npz, strategy="grid", '
        "trials=<space size>, workers=2)` compiles for `cpu-int8` and scores top-1 on the test "
        "images in percent; its log is the exhaustive table. Losses are against the float model "
        "compiled for `cpu` and scored on the same images.",
        "",
        "**Strategies.** Each strategy is replayed against each table "
        "(`modelc.tune.simulate.replay`): it proposes, the table answers. `+transfer` gives the "
        "cost model the other four models' tables (leave-one-out) with their descriptors "
        "(`modelc.tune.features.model_descriptors`); without it the strategy starts cold.",
        "",
        "## Exhaustive int8 search (Quantune's space, 48 configurations)",
        "",
        *exhaustive_section(res, "quantune"),
        "Loss of the best configuration that uses each option (what each knob costs when the "
        "others are chosen well):",
        "",
        *knob_section(res, "quantune"),
        "## Strategy comparison",
        "",
        *strategy_section(res, "quantune"),
        *[f"![{p.stem}](img/{p.name})" for p in plots],
        "",
        f"Loss (points) of the best configuration found within {SMALL_BUDGET} measurements "
        f"(mean over seeds, worst seed in brackets), next to the exhaustive best:",
        "",
        *budget_section(res, "quantune"),
        "## W4A8: int4 weights, int8 activations (64 configurations)",
        "",
        "Scheme x clipping (max, MSE) x granularity x weight rounding (nearest, GPTQ) x bias "
        "correction, every calibration sample. Loss columns: the best configuration restricted "
        "to that option.",
        "",
        *w4a8_section(res),
        *(_w4a8_strategies(res)),
        *sensitivity_section(res),
        "## QDQ export",
        "",
        "The best Quantune-space configuration of each model exported with "
        "`modelc.export.export_qdq` and run in onnxruntime (CPU), against modelc's own "
        "compiled `cpu-int8` library, on the same test images:",
        "",
        *qdq_section(res),
    ]
    path.write_text("\n".join(lines).rstrip() + "\n")


def sensitivity_section(res: Results) -> list[str]:
    """How the random / xgb+transfer ratio moves with the target's tolerance: on flat tables
    the 0.1-point target is a few test images, and the ratio is mostly set by them."""
    if not res.sensitivity:
        return []
    tols = sorted({t for by_tol in res.sensitivity.values() for t in by_tol})
    head = ["space", *[f"within {t:g} pt" for t in tols]]
    rows = []
    for space, by_tol in res.sensitivity.items():
        cells = []
        for t in tols:
            runs = by_tol.get(t, [])
            ts = res.tables[space]
            near = [sum(v >= x.best - t - 1e-9 for v in x.ok().values()) for x in ts.values()]
            oracle = geomean([(len(x.top1) + 1) / (k + 1) for x, k in zip(ts.values(), near)])
            cells.append(
                f"{_fmt(ratio(runs, 'random', 'xgb+transfer'))}x (ceiling {_fmt(oracle)}x)"
            )
        rows.append([f"`{space}`", *cells])
    one_image = 100 / res.data["test_samples"]
    return [
        "## Sensitivity to the target's tolerance",
        "",
        f"The goal is the {TOLERANCE}-point target above. One test image is {one_image:.3f} "
        "points, and the top configurations of a model differ by a few correlated images, so "
        "the ratio also depends on where that line falls. random / xgb+transfer (geometric "
        f"mean over models and {res.seeds} seeds) against the same ratio for a strategy whose "
        "first measurement always reaches the target (ceiling):",
        "",
        *_table(head, rows),
    ]


def _w4a8_strategies(res: Results) -> list[str]:
    if not res.runs.get("w4a8"):
        return []
    return [
        "Strategies on the W4A8 space (same replay, transfer from the other models' W4A8 tables):",
        "",
        *strategy_section(res, "w4a8"),
    ]


def _w4a8_summary(res: Results) -> list[str]:
    tables, runs = res.tables.get("w4a8", {}), res.runs.get("w4a8", [])
    if not tables:
        return []
    plain = [
        best_point(t, {"rounding": "nearest", "bias_correction": "off"}) for t in tables.values()
    ]
    plain_loss = max(
        t.float_top1 - t.top1[p] for t, p in zip(tables.values(), plain) if p is not None
    )
    line = (
        f"- W4A8 (int4 weights): best loss {_loss_range(tables)} points (the best with "
        f"round-to-nearest and no bias correction loses up to {_fmt(plain_loss)})"
    )
    if runs:
        line += (
            "; random / "
            f"xgb+transfer = **{_fmt(ratio(runs, 'random', 'xgb+transfer'))}x** (random / cold "
            f"xgb = {_fmt(ratio(runs, 'random', 'xgb'))}x; oracle "
            f"{_fmt(oracle_ratio(tables))}x)"
        )
    return [line + "."]


def _int8_spread(tables: dict[str, Table]) -> list[str]:
    """How flat the int8 space is; the reading of it only when it is flat (the worst
    configuration within FLAT points of float on every model)."""
    worst = max(t.float_top1 - min(t.ok().values()) for t in tables.values())
    near = [near_best(t) for t in tables.values()]
    line = (
        f"- Spread of the int8 space: the worst configuration loses {_fmt(worst)} points on its "
        f"worst model; {min(near)}-{max(near)} of 48 configurations per model are within "
        f"{TOLERANCE} points of the best."
    )
    if worst <= FLAT:
        line += (
            " The space is flat on this zoo: which configurations land within 0.1 points is "
            "decided by a handful of test images more than by knob effects a cost model could "
            "learn or transfer."
        )
    return [line]


def _range_pct(res: Results) -> str:
    vals = [100 * m.float_top1 for m in res.models.values()]
    return f"{min(vals):.2f}-{max(vals):.2f}%"


def _loss_range(tables: dict[str, Table]) -> str:
    if not tables:
        return "n/a"
    losses = [t.float_top1 - t.best for t in tables.values()]
    return f"{min(losses):.2f} to {max(losses):.2f}"
