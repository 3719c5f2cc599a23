"""The `modelc` command line: compile, run and inspect models.

    modelc compile model.onnx --target cpu -o out/ [--input-shape x=1x3x224x224]
    modelc run out/ --input x=x.npy [--output-dir results/]
    modelc inspect model.onnx | out/ [--ir]     (out/: per-launch MACs and bytes too)
    modelc inspect --passes                    (registered passes, the pipelines using them)
    modelc inspect model.onnx --quant-error --calibration calib.npz [--quant-config best.json]
    modelc tune model.onnx --calibration calib.npz [--eval-data eval.npz] -o tune/
    modelc export model.onnx --calibration calib.npz [--quant-config best.json] -o model_qdq.onnx

Errors a user can cause (a `modelc.Error`, or a path of theirs that is missing or unreadable)
print one line, `modelc: error: ...`, and exit with status 2, never a traceback; anything else
is a bug and keeps its traceback. The compiler is imported inside each command, so `--help` and
argument errors answer at once without loading numpy kernels, onnx or toolchains.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelc.errors import Error, InputError, ModelLoadError

PROG = "modelc"


# ---- argument parsing ----------------------------------------------------------------------------


def parse_shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    """`name=1x3x224x224` (or `name=1,3,224,224`) -> ("name", (1, 3, 224, 224)).

    The name is everything before the last `=`, since ONNX names may contain anything.
    """
    name, sep, dims = text.rpartition("=")
    parts = re.split(r"[x,]", dims.strip()) if dims.strip() else []
    if not sep or not name or not parts or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"bad input shape {text!r}: expected NAME=DIMS, like input=1x3x224x224"
        )
    shape = tuple(int(p) for p in parts)
    if 0 in shape:
        raise argparse.ArgumentTypeError(f"bad input shape {text!r}: dimensions must be >= 1")
    return name, shape


def build_parser() -> argparse.ArgumentParser:
    from modelc import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="modelc: compile ONNX models into self-contained libraries.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compile", help="compile a model into an output folder")
    p.description = "Compile MODEL for a target and write the output folder OUT."
    p.add_argument("model", metavar="MODEL", help="the model file (.onnx)")
    p.add_argument("--target", default="cpu", help=f"target name: {_target_names()} (default: cpu)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    _add_input_shape(p)
    p.add_argument("--pipeline", metavar="STR", help="pass pipeline instead of the target's own")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--dump-ir", metavar="DIR", help="write the IR after every pass into DIR")
    p.add_argument(
        "--calibration",
        metavar="NPZ",
        help="calibration samples for quantizing targets (cpu-int8): an .npz with one array per "
        "model input name, samples along axis 0",
    )
    p.add_argument(
        "--quant-config",
        metavar="JSON",
        help="quantization options as a JSON file (QuantConfig.to_json), for the quantize pass",
    )
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run a compiled model on .npy inputs")
    p.description = (
        "Run the compiled model in OUT on inputs from .npy files; write one .npy per output."
    )
    p.add_argument("out", metavar="OUT", help="output folder of `modelc compile`")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="an input as a .npy file (repeat per input; NAME= may be left out "
        "when the model has one input)",
    )
    p.add_argument(
        "--output-dir", default=".", metavar="D", help="where to write outputs (default: .)"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inspect", help="show a model's graph or an output folder's manifest")
    p.description = (
        "For an .onnx file: print its graph IR and op counts. For an output folder: print "
        "its manifest (target, inputs, outputs, kernels, memory, pass timings)."
    )
    p.add_argument("path", nargs="?", metavar="MODEL|OUT", help="an .onnx file or an output folder")
    _add_input_shape(p)
    p.add_argument("--ir", action="store_true", help="also print OUT/model.ir (output folders)")
    p.add_argument(
        "--passes",
        action="store_true",
        help="list the registered passes and which targets' pipelines run them "
        "(warns about passes no pipeline runs)",
    )
    p.add_argument(
        "--quant-error",
        action="store_true",
        help="per-layer error of cpu-int8 quantization against the float model (SQNR, cosine, "
        "max error; the worst layers marked); needs --calibration",
    )
    p.add_argument(
        "--calibration",
        metavar="NPZ",
        help="with --quant-error: calibration samples, an .npz with one array per model input",
    )
    p.add_argument(
        "--quant-config",
        metavar="JSON",
        help="with --quant-error: quantization options as a JSON file (QuantConfig.to_json)",
    )
    p.add_argument(
        "--samples",
        type=int,
        metavar="N",
        help="with --quant-error: compare on the first N calibration samples (default: all)",
    )
    p.set_defaults(func=cmd_inspect)

    from modelc.export.cli import add_export_parser
    from modelc.tune.cli import add_tune_parser

    add_tune_parser(sub)
    add_export_parser(sub)
    return parser


def _add_input_shape(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        type=parse_shape_arg,
        metavar="NAME=DIMS",
        help="fix an input's shape, e.g. input=1x3x224x224 (repeatable)",
    )


def _shapes(pairs: list[tuple[str, tuple[int, ...]]]) -> dict[str, tuple[int, ...]] | None:
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in pairs:
        if name in shapes and shapes[name] != shape:
            raise InputError(f"--input-shape gives {name!r} twice, with different shapes")
        shapes[name] = shape
    return shapes or None


# ---- commands --------------------------------------------------------------------------------


def cmd_compile(args: argparse.Namespace) -> int:
    import modelc

    _require_file(args.model)
    options: dict[str, Any] = {}
    if args.pipeline is not None:
        options["pipeline"] = args.pipeline
    if args.print_after_all:
        options["print_after_all"] = True
    if args.dump_ir is not None:
        options["dump_ir"] = args.dump_ir
    if args.calibration is not None:
        _require_file(args.calibration)
        options["calibration"] = args.calibration
    if args.quant_config is not None:
        _require_file(args.quant_config)
        options["quant_config"] = args.quant_config
    start = time.perf_counter()
    lib = modelc.compile(
        args.model, target=args.target, input_shapes=_shapes(args.input_shape), **options
    )
    lib.save(args.output)
    seconds = time.perf_counter() - start
    m = lib.manifest
    print(f"compiled {args.model} -> {args.output} in {seconds:.2f} s")
    print(f"  target     {m.get('target', args.target)}")
    print(f"  kernels    {_count(m.get('kernels'))}")
    print(f"  workspace  {_bytes(m.get('workspace_bytes'))}")
    print(f"  weights    {_bytes(m.get('weights_bytes'))}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    import modelc

    _require_dir(args.out, "an output folder of `modelc compile`")
    lib = modelc.load(args.out)
    names = [name for name, *_ in lib.inputs]
    feeds = {name: _load_npy(path) for name, path in _input_files(args.input, names).items()}
    outputs = lib.run(feeds)

    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for name, value in outputs.items():
        arr = np.asarray(value)
        path = out_dir / _file_name(name, taken)
        np.save(path, arr)
        print(f"{name}: {_stats(arr)} -> {path}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.passes:
        _inspect_passes()
        if args.path is None:
            return 0
        print()
    if args.path is None:
        raise InputError("inspect: give a model file or an output folder (or --passes)")
    if args.quant_error:
        return _inspect_quant_error(args)
    quant_only = [
        flag
        for flag, value in (
            ("--calibration", args.calibration),
            ("--quant-config", args.quant_config),
            ("--samples", args.samples),
        )
        if value is not None
    ]
    if quant_only:
        raise InputError(f"inspect: {', '.join(quant_only)} only go with --quant-error")
    path = Path(args.path)
    if path.is_dir():
        return _inspect_output(path, show_ir=args.ir)
    _require_file(args.path)
    return _inspect_model(path, _shapes(args.input_shape))


def _inspect_model(path: Path, shapes: dict[str, tuple[int, ...]] | None) -> int:
    from modelc.frontend.onnx import load_onnx
    from modelc.ir.printer import print_graph

    g = load_onnx(str(path), shapes)
    print(print_graph(g, constants="elide"))
    counts = Counter(node.op for node in g.nodes)
    weights = sum(c.data.nbytes for c in g.constants)
    print(f"\n{len(g.nodes)} nodes, {len(g.constants)} constants ({_bytes(weights)})")
    width = max((len(op) for op in counts), default=2)
    for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {op:<{width}}  {n}")
    return 0


def _inspect_quant_error(args: argparse.Namespace) -> int:
    """`inspect MODEL --quant-error`: the per-layer error table of modelc.quant_error."""
    if args.calibration is None:
        raise InputError(
            "inspect --quant-error needs calibration samples: add --calibration calib.npz "
            "(one array per model input name, samples along axis 0)"
        )
    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples must be >= 1, got {args.samples}")
    files = ("MODEL", args.path), ("--calibration", args.calibration)
    files += (("--quant-config", args.quant_config),)
    for what, file in files:
        if file is not None and not os.path.isfile(file):
            state = "is a folder" if os.path.isdir(file) else "no such file"
            raise InputError(f"inspect --quant-error: {what} {file}: {state}; give a file")
    from modelc.quant_error import format_table, quant_error

    rows = quant_error(
        args.path,
        args.calibration,
        quant_config=args.quant_config,
        samples=args.samples,
        input_shapes=_shapes(args.input_shape),
    )
    print(format_table(rows))
    return 0


def _inspect_output(out: Path, show_ir: bool) -> int:
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        raise ModelLoadError(f"{out}: no manifest.json; is it an output folder of modelc compile?")
    try:
        m = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{manifest_path}: not valid JSON ({err})") from err
    print(f"output folder {out}")
    print(f"  target     {m.get('target', '?')}")
    pipeline = m.get("pipeline_string") or m.get("pipeline")
    if pipeline:
        text = ",".join(pipeline) if isinstance(pipeline, list) else pipeline
        print(f"  pipeline   {text}")
    for kind in ("inputs", "outputs"):
        for entry in m.get(kind, []):
            name, shape, dtype = _signature(entry)
            print(f"  {kind[:-1]:<9}  {name}: {dtype}{list(shape)}")
    kernels = m.get("kernels")
    print(f"  kernels    {_count(kernels)}")
    print(f"  workspace  {_bytes(m.get('workspace_bytes'))}{_plan_note(m)}")
    print(f"  weights    {_bytes(m.get('weights_bytes'))}")
    passes = m.get("passes") or []
    if passes:
        print("  passes")
        for p in passes:
            seconds = p.get("seconds")
            timing = f"{1000 * seconds:9.2f} ms" if isinstance(seconds, (int, float)) else ""
            print(f"    {p.get('name', '?'):<28} {timing}")
    report = m.get("kernels_report")
    if isinstance(report, list) and report:
        _print_kernels_report(report)
    if show_ir:
        ir_path = out / "model.ir"
        if not ir_path.is_file():
            raise ModelLoadError(f"{out}: no model.ir in this output folder")
        print()
        print(ir_path.read_text(), end="")
    return 0


def _plan_note(m: dict[str, Any]) -> str:
    """`(best-fit; naive sum N, lower bound M)` when the manifest has the planner's figures."""
    naive, bound = m.get("workspace_naive_bytes"), m.get("workspace_lower_bound_bytes")
    if not isinstance(naive, int) or not isinstance(bound, int):
        return ""
    strategy = m.get("workspace_strategy")
    head = f"{strategy}; " if strategy else ""
    return f" ({head}naive sum {naive:,}, lower bound {bound:,})"


def _print_kernels_report(report: list[dict[str, Any]]) -> None:
    """One row per launch in program order: what it computes, MACs, bytes moved, and each
    one's share of the totals, so the launches worth optimizing stand out."""
    macs = [int(r.get("macs", 0)) for r in report]
    reads = [int(r.get("bytes_read", 0)) for r in report]
    writes = [int(r.get("bytes_written", 0)) for r in report]
    moved = [a + b for a, b in zip(reads, writes)]
    total_macs, total_moved = sum(macs), sum(moved)
    names = [_clip(str(r.get("kernel", "?")), 36) for r in report]
    ops = [_clip(str(r.get("ops") or r.get("op", "?")), 28) for r in report]
    shapes = [
        " ".join("x".join(map(str, s)) or "scalar" for s in r.get("outputs", [])) for r in report
    ]
    wk, wo, ws = (max(map(len, col), default=0) for col in (names, ops, shapes))
    wk, wo, ws = max(wk, 6), max(wo, 3), max(ws, 7)
    print(f"  launches   {len(report)} (program order; % = share of the total)")
    print(
        f"    {'#':>4}  {'kernel':<{wk}}  {'ops':<{wo}}  {'outputs':<{ws}}  {'MACs':>8} {'%':>6}"
        f"  {'read':>8}  {'written':>8} {'%':>6}"
    )
    for i, r in enumerate(report):
        mark = "*" if r.get("inplace") else " "
        print(
            f"    {i:>4}  {names[i]:<{wk}}  {ops[i]:<{wo}}  {shapes[i]:<{ws}}"
            f"  {_si(macs[i]):>8} {_share(macs[i], total_macs):>6}"
            f"  {_si(reads[i]):>8}{mark} {_si(writes[i]):>8}"
            f" {_share(moved[i], total_moved):>6}"
        )
    read, written = sum(reads), sum(writes)
    print(
        f"    {'':>4}  {'total':<{wk}}  {'':<{wo}}  {'':<{ws}}  {_si(total_macs):>8} {'100%':>6}"
        f"  {_si(read):>8}  {_si(written):>8} {'100%':>6}"
    )
    print(f"    MACs {total_macs:,}; bytes moved {total_moved:,}; * = written in place")


def _si(n: int) -> str:
    """1234567 -> 1.23M: short, fixed-width numbers for tables (exact totals print below)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _share(part: int, total: int) -> str:
    return f"{100 * part / total:.1f}%" if total else "-"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _inspect_passes() -> None:
    from modelc.passes.usage import pipeline_users

    users = pipeline_users()
    width = max(map(len, users), default=4)
    print("registered passes (targets whose default pipeline runs them)")
    for name, targets in users.items():
        print(f"  {name:<{width}}  {', '.join(targets) or '-'}")
    unused = [name for name, targets in users.items() if not targets]
    if unused:
        print(
            f"{PROG}: warning: no target pipeline runs {', '.join(unused)} "
            "(reachable only through --pipeline)",
            file=sys.stderr,
        )


# ---- helpers ---------------------------------------------------------------------------------


def _require_file(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    if os.path.isdir(path):
        raise ModelLoadError(f"{path}: is a folder, expected a model file")


def _require_dir(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    if not os.path.isdir(path):
        raise ModelLoadError(f"{path}: not a folder; expected {what}")


def _input_files(specs: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """Map `--input` arguments to the model's input names; a lone file names the only input."""
    files: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or (name not in names and len(names) == 1 and os.path.exists(spec)):
            if len(names) != 1:
                raise InputError(
                    f"--input {spec!r}: the model has {len(names)} inputs "
                    f"({', '.join(names)}); write --input NAME=FILE"
                )
            name, path = names[0], spec
        if name not in names:
            raise InputError(f"--input {spec!r}: no input {name!r}; inputs: {', '.join(names)}")
        if name in files:
            raise InputError(f"--input gives {name!r} twice")
        files[name] = path
    missing = [n for n in names if n not in files]
    if missing:
        raise InputError(f"no --input for {', '.join(missing)}; give --input NAME=FILE.npy")
    return files


def _load_npy(path: str) -> Any:
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as err:
        raise InputError(f"{path}: not a .npy array file ({err})") from err


def _file_name(name: str, taken: set[str]) -> str:
    """A safe, unique `<name>.npy` for an output name (names may hold '/', ':', ...)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "output"
    candidate, i = stem, 1
    while candidate in taken:
        candidate, i = f"{stem}_{i}", i + 1
    taken.add(candidate)
    return f"{candidate}.npy"


def _stats(arr: Any) -> str:
    head = f"shape {tuple(arr.shape)} {arr.dtype}"
    if arr.size == 0 or arr.dtype.kind not in "biuf":
        return head
    a = arr.astype("float64")
    return f"{head} min {a.min():.6g} max {a.max():.6g} mean {a.mean():.6g}"


def _signature(entry: Any) -> tuple[str, Sequence[Any], str]:
    """An input/output entry of the manifest: {"name", "shape", "dtype"} or [name, shape, dtype]."""
    if isinstance(entry, dict):
        return entry.get("name", "?"), entry.get("shape", []), entry.get("dtype", "?")
    name, shape, dtype = entry
    return name, shape, dtype


def _count(kernels: Any) -> str:
    if isinstance(kernels, int):
        return str(kernels)
    return str(len(kernels)) if isinstance(kernels, (list, tuple, dict)) else "?"


def _bytes(n: Any) -> str:
    return f"{n:,} bytes" if isinstance(n, int) else "?"


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _user_paths(args: argparse.Namespace) -> list[Path]:
    keys = ("model", "output", "dump_ir", "out", "output_dir", "path")
    keys += ("calibration", "quant_config", "eval_data")
    paths = [getattr(args, k) for k in keys if getattr(args, k, None)]
    paths += [s.partition("=")[2] or s for s in getattr(args, "input", [])]
    return [Path(p).absolute() for p in paths]


def _is_user_path(filename: Any, args: argparse.Namespace) -> bool:
    """Whether an OSError is about a path the user gave (or a file inside one)."""
    if filename is None:
        return False
    f = Path(os.fsdecode(filename)).absolute()
    return any(f == p or p in f.parents for p in _user_paths(args))


def _target_names() -> str:
    """The registered targets, for --help (the registry is light to import)."""
    from modelc.targets.registry import all_targets

    return ", ".join(sorted(all_targets()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error argparse already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.func(args)
    except Error as err:
        message = _one_line(str(err))
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        if not _is_user_path(err.filename, args):
            raise
        message = f"{err.filename}: {err.strerror or err}"
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `modelc inspect model.onnx | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
