"""Quantune benchmark: does `modelc.tune` find the best int8 configuration with far fewer
measurements than random search? Writes docs/quantization.md.

    .venv/bin/python bench/quantune.py [--retrain] [--seeds 10] [--spaces quantune,w4a8]

1. Zoo (bench/quantune_zoo.py): five CNNs of Quantune's families (ResNet, MobileNetV2,
   SqueezeNet, ShuffleNetV2, GoogLeNet shapes) trained on scikit-learn digits, exported to ONNX,
   with calibration and test sets; cached in build/quantune/ (`--retrain` rebuilds).
2. Exhaustive tables (bench/quantune_measure.py): every configuration of Quantune's 48-point
   int8 space and of the 64-point W4A8 space, measured by `modelc.tune` (grid strategy, two
   worker processes); its logs are the cache, so a rerun measures only what is missing.
3. Replays (bench/quantune_replay.py): xgb (with and without leave-one-out transfer), greedy,
   random, grid and genetic search against each table over `--seeds` seeds: measurements and
   wall time to reach within 0.1 points of the exhaustive best, loss after 10 measurements.
4. QDQ check: the best configuration of each model exported with `modelc.export.export_qdq`
   and scored in onnxruntime next to modelc's compiled library.
5. Report (bench/quantune_report.py, quantune_plot.py): a ratio table on stdout,
   docs/quantization.md and docs/img/quantune_trials.png.

The full run from an empty cache took 42 minutes on a shared 2-core machine (zoo 2.5, int8 tables
26, W4A8 tables 12, replays and QDQ check 1.5); with the cache, about 1.5 minutes.
"""

from __future__ import annotations

import os

# One thread per compiled library: the two trial workers share the cores, and OpenMP threads that
# spin while idle would steal each other's time.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quantune_measure as measure  # noqa: E402
import quantune_plot  # noqa: E402
import quantune_replay as replay  # noqa: E402
import quantune_report as report  # noqa: E402
from quantune_zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Extra target tolerances (points of top-1) for the sensitivity table; the goal stays 0.1.
SENSITIVITY = (0.2, 0.35)


def qdq_check(zoo: Zoo, tables: dict[str, measure.Table]) -> dict[str, dict[str, Any]]:
    """modelc cpu-int8 vs onnxruntime on the QDQ export, best configuration of each model."""
    import onnxruntime as ort

    import modelc
    from modelc.export import export_qdq
    from modelc.tune.space import get_space

    ev = np.load(zoo.eval_data)
    x, y = ev["input"], ev["labels"]
    out: dict[str, dict[str, Any]] = {}
    for name, t in tables.items():
        space = get_space(t.space)
        p = report.best_point(t)
        if p is None:
            continue
        fields = space.fields(p)
        lib = modelc.compile(
            str(zoo.models[name].onnx),
            target="cpu-int8",
            calibration=str(zoo.calibration),
            quant_config=fields,
        )
        ours = np.array([lib(xi).argmax() for xi in x])
        with tempfile.TemporaryDirectory() as tmp:
            path = export_qdq(
                str(zoo.models[name].onnx),
                Path(tmp) / f"{name}_qdq.onnx",
                calibration=str(zoo.calibration),
                quant_config=fields,
            )
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            iname = sess.get_inputs()[0].name
            theirs = np.array([sess.run(None, {iname: xi})[0].argmax() for xi in x])
        out[name] = {
            "modelc": 100.0 * float(np.mean(ours == y)),
            "onnxruntime": 100.0 * float(np.mean(theirs == y)),
            "agreement": 100.0 * float(np.mean(ours == theirs)),
            "table": t.top1[p],
            "config": report._labels(space, p),
        }
    return out


def print_summary(res: report.Results) -> None:
    for space, runs in res.runs.items():
        tables = res.tables[space]
        print(f"\n== {space}: measurements to within {replay.TOLERANCE} pt of the exhaustive best")
        strategies = list(dict.fromkeys(r.strategy for r in runs))
        print(f"{'strategy':18s}" + "".join(f"{m:>13s}" for m in tables) + "  random/strategy")
        for s in strategies:
            cells = [
                np.mean([r.trials for r in runs if r.strategy == s and r.model == m])
                for m in tables
            ]
            print(
                f"{s:18s}"
                + "".join(f"{c:13.1f}" for c in cells)
                + f"  {replay.ratio(runs, 'random', s):8.2f}x"
            )
        print(
            f"{'loss of best':18s}"
            + "".join(f"{t.float_top1 - t.best:13.2f}" for t in tables.values())
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=ROOT / "build" / "quantune")
    ap.add_argument("--retrain", action="store_true", help="retrain the zoo, remeasure all")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--spaces", default="quantune,w4a8")
    ap.add_argument("--models", default="", help="comma-separated subset (default: all five)")
    ap.add_argument("--no-qdq", action="store_true", help="skip the onnxruntime QDQ check")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "quantization.md")
    args = ap.parse_args(argv)

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    names = [n for n in args.models.split(",") if n] or None
    zoo = Zoo.load_or_build(args.cache, names, retrain=args.retrain)
    seconds["zoo"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    spaces = [s for s in args.spaces.split(",") if s]
    tables: dict[str, dict[str, measure.Table]] = {s: {} for s in spaces}
    for s in spaces:
        for name, m in zoo.models.items():
            tables[s][name] = measure.measure(
                name,
                m.onnx,
                s,
                zoo.root,
                zoo.calibration,
                zoo.eval_data,
                args.workers,
                restart=args.retrain,
            )
    measure.save_tables(zoo.root / "tables.json", tables)
    seconds["measuring"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    runs = {s: replay.compare(tables[s], args.seeds) for s in spaces}
    sensitivity = {
        s: {
            tol: replay.compare(tables[s], args.seeds, ["xgb+transfer", "random"], tolerance=tol)
            for tol in SENSITIVITY
        }
        for s in spaces
    }
    sensitivity = {s: {replay.TOLERANCE: runs[s], **by_tol} for s, by_tol in sensitivity.items()}
    seconds["replays"] = time.perf_counter() - t0

    qdq: dict[str, dict[str, Any]] = {}
    if not args.no_qdq and "quantune" in tables:
        t0 = time.perf_counter()
        qdq = qdq_check(zoo, tables["quantune"])
        seconds["QDQ check"] = time.perf_counter() - t0

    data = json.loads((zoo.root / "data.json").read_text())
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    res = report.Results(
        zoo.models, data, tables, runs, args.seeds, qdq, machine, seconds, sensitivity
    )
    print_summary(res)
    plots = []
    if runs:
        img = args.out.parent / "img" / "quantune_trials.png"
        p = quantune_plot.plot(img, runs, list(zoo.models))
        if p is not None:
            plots.append(p)
    report.write(args.out, res, plots)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
