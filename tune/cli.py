"""`modelc tune`: the command line of the quantization tuner.

    modelc tune model.onnx --calibration calib.npz [--eval-data eval.npz] [--trials N]
        [--strategy xgb|random|grid|genetic|greedy] [--space quantune|extended|w4a8]
        [--objective accuracy|latency|accuracy-within-latency] [--max-loss POINTS]
        [--max-latency-ms MS] [--workers N] [--ray ADDRESS|auto|local] [--patience K]
        [--seed S] [--prior LOG ...] [--restart] -o TUNE_DIR

`add_tune_parser(sub)` adds the subcommand to modelc's parser (cli.py's `build_parser`);
errors follow modelc's CLI rule: a `modelc.Error` is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from modelc.cli import _add_input_shape, _shapes
from modelc.errors import InputError, ModelLoadError

STRATEGY_HELP = "search strategy: xgb (cost model, default), random, grid, genetic, greedy"


def add_tune_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("tune", help="search quantization configurations (Quantune) for a model")
    p.description = (
        "Search post-training quantization configurations of MODEL for target cpu-int8 and "
        "write TUNE_DIR/best.json (use it with `modelc compile --quant-config`), log.jsonl and "
        "pareto.png. Without --eval-data, a quarter of the calibration samples is held back and "
        "the score is top-1 agreement with the float model on them."
    )
    p.add_argument("model", metavar="MODEL", help="the model file (.onnx)")
    p.add_argument(
        "--calibration",
        required=True,
        metavar="NPZ",
        help="calibration samples: an .npz with one array per model input, samples on axis 0",
    )
    p.add_argument(
        "--eval-data",
        metavar="NPZ",
        help="labeled evaluation samples: the model inputs plus `labels` (class indices); the "
        "score is top-1 accuracy in percent",
    )
    p.add_argument("-o", "--output", required=True, metavar="TUNE_DIR", help="output folder")
    p.add_argument("--trials", type=int, metavar="N", help="budget (default: 48 or the space size)")
    p.add_argument("--strategy", default="xgb", metavar="NAME", help=STRATEGY_HELP)
    p.add_argument(
        "--space", default="quantune", metavar="NAME", help="quantune (default), extended, w4a8"
    )
    p.add_argument(
        "--objective",
        default="accuracy",
        metavar="NAME",
        help="accuracy (default); latency: fastest within --max-loss; accuracy-within-latency: "
        "best with latency <= --max-latency-ms",
    )
    p.add_argument(
        "--max-loss",
        type=float,
        metavar="POINTS",
        help="accepted loss against the float model, in score points; floats the weakest "
        "layers after the search while the best configuration loses more",
    )
    p.add_argument("--max-latency-ms", type=float, metavar="MS", help="latency bound (ms)")
    p.add_argument(
        "--fallback-steps",
        type=int,
        default=3,
        metavar="N",
        help="at most N layers left float by --max-loss (default: 3)",
    )
    p.add_argument("--workers", type=int, metavar="N", help="trials at once in local processes")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run trials as Ray tasks: auto (a running cluster), local (start one here) or "
        "ray://HOST:PORT; needs pip install 'modelc[distributed]'",
    )
    p.add_argument(
        "--patience", type=int, metavar="K", help="stop after K trials without improvement"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the strategy (default: 0)")
    p.add_argument(
        "--prior",
        nargs="+",
        default=[],
        metavar="LOG",
        help="log.jsonl files of other models' runs, for transfer (xgb strategy)",
    )
    p.add_argument(
        "--restart", action="store_true", help="overwrite a log in TUNE_DIR instead of resuming"
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (or per-trial lines)"
    )
    _add_input_shape(p)
    p.set_defaults(func=cmd_tune)
    return p


def cmd_tune(args: argparse.Namespace) -> int:
    from modelc.tune.api import tune

    for path in [args.model, args.calibration, args.eval_data, *args.prior]:
        if path is not None:
            _require_file(path)
    result = tune(
        args.model,
        args.calibration,
        eval_data=args.eval_data,
        trials=args.trials,
        strategy=args.strategy,
        space=args.space,
        objective=args.objective,
        max_loss=args.max_loss,
        max_latency_ms=args.max_latency_ms,
        workers=args.workers,
        ray=args.ray,
        seed=args.seed,
        patience=args.patience,
        prior=args.prior,
        fallback_steps=args.fallback_steps,
        output_dir=args.output,
        restart=args.restart,
        progress=not args.no_progress,
        input_shapes=_shapes(args.input_shape),
    )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    searched = sum(t.kind == "search" for t in result.trials)
    print(f"tuned {args.model}: {searched} configurations of space {result.space}")
    print(result.table())
    best = result.best
    print(
        f"best: trial {best.index}, score {best.score:.3f} "
        f"(float {result.float_score:.3f}, loss {result.loss:.3f})"
    )
    for name, path in result.paths.items():
        print(f"  {name:<8} {path}")
    print(
        f"compile it: modelc compile {args.model} --target cpu-int8 --calibration "
        f"{args.calibration} --quant-config {result.paths.get('best')} -o OUT"
    )
    return 0


def _require_file(path: str) -> None:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelLoadError(f"{path}: is a folder, expected a file")
