"""Pass benchmark: what fusion and memory planning buy on three model families, measured in one
run against onnxruntime, written to docs/passes.md.

    .venv/bin/python bench/passes.py [--repeat 20] [--out docs/passes.md]

Models: ResNet-50 (the onnx wheel's light model), the test zoo's MobileNetV2-shaped net, and a
BERT-style encoder (torch nn.TransformerEncoder: 2 layers, hidden 64, 4 heads, seq 16, GELU),
both exported with torch.onnx.export(dynamo=True).

For each model, the cpu target's full default pipeline ("fused") against the same pipeline
without its fuse-* passes ("unfused"):
- kernels: launches per inference; bytes moved: sum over launches of bytes read + written
  (manifest kernels_report), the memory traffic fusion removes;
- workspace bytes: naive sum, each plan-memory strategy, and the lower bound, planned on the
  same lowered program (plus best-fit after reorder-for-memory);
- latency: median of --repeat runs of both compiled libraries and of onnxruntime on the same
  input, with ratios. Timings are for information on a shared machine: nothing here is a
  pass/fail test, and only ratios measured in the same run mean anything.
"""

from __future__ import annotations

import os

# Runtimes share the cores of one process: threads that spin while idle (libgomp's and
# onnxruntime's defaults) steal the other runtime's cores and inflate its timings.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import logging
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

import modelc
from modelc.frontend.onnx import load_onnx
from modelc.ir.graph import Graph
from modelc.passes.registry import PassContext, format_pipeline, parse_pipeline, run_pipeline
from modelc.targets.registry import get_target

ROOT = Path(__file__).resolve().parents[1]
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
STRATEGIES = ("naive", "greedy-by-size", "best-fit{inplace=false}", "best-fit")


# ---- models ----------------------------------------------------------------------------------


def resnet50(tmp: Path) -> tuple[Path, np.ndarray]:
    path = LIGHT / "light_resnet50.onnx"
    shape = (1, 3, 224, 224)
    n = int(np.prod(shape))
    return path, (np.arange(n).reshape(shape) / n).astype(np.float32)


def mobilenetv2(tmp: Path) -> tuple[Path, np.ndarray]:
    sys.path.insert(0, str(ROOT / "tests"))
    import zoo

    path = zoo.export("mobilenetv2", tmp / "mobilenetv2.onnx", dynamo=True)
    return path, zoo.example_input("mobilenetv2")


def bert_encoder(tmp: Path) -> tuple[Path, np.ndarray]:
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(
            d_model=64,
            nhead=4,
            dim_feedforward=256,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
        )
        net = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
        x = torch.randn(1, 16, 64)
    path = tmp / "bert_encoder.onnx"
    with warnings.catch_warnings(), _quiet_torch():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["input"],
            output_names=["output"],
            verbose=False,
        )
    return path, x.numpy()


MODELS: dict[str, Callable[[Path], tuple[Path, np.ndarray]]] = {
    "resnet50": resnet50,
    "mobilenetv2": mobilenetv2,
    "bert-encoder": bert_encoder,
}


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# ---- measuring -------------------------------------------------------------------------------


def pipelines() -> dict[str, str]:
    """The cpu target's pipeline, and the same without its fuse-* passes."""
    full = parse_pipeline(get_target("cpu").pipeline)
    unfused = [p for p in full if not p.name.startswith("fuse-")]
    return {"fused": format_pipeline(full), "unfused": format_pipeline(unfused)}


def interleaved_medians(runners: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median seconds per call of each runner, calling them in turn `repeat` times (after one
    warm-up call each: page in weights, start thread pools), so that a noisy neighbour on a
    shared machine slows all of them alike instead of whichever ran during the noise."""
    for fn in runners.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeat):
        for k, fn in runners.items():
            t = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in samples.items()}


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def plans(graph: Graph, pipeline: str) -> dict[str, int]:
    """Workspace bytes of each strategy on the program `pipeline` lowers `graph` to, the naive
    sum and the lower bound, and best-fit after reorder-for-memory."""
    passes = parse_pipeline(pipeline)
    lowering = [p for p in passes if p.name != "plan-memory"]
    program = run_pipeline(graph, lowering, PassContext())
    out: dict[str, int] = {}
    for strategy in STRATEGIES:
        options = strategy.replace("{", ",").rstrip("}")
        ctx = PassContext()
        run_pipeline(program, parse_pipeline(f"plan-memory{{strategy={options}}}"), ctx)
        report = ctx.reports["plan-memory"]
        out[strategy] = report["workspace_bytes"]
        out["bound"] = report["lower_bound_bytes"]
    names = [p.spec() for p in lowering]
    if "reorder-for-memory" not in names:
        names.insert(names.index("lower-to-loops"), "reorder-for-memory")
    ctx = PassContext()
    run_pipeline(graph, parse_pipeline(",".join(names) + ",plan-memory"), ctx)
    out["best-fit+reorder"] = ctx.reports["plan-memory"]["workspace_bytes"]
    out["bound+reorder"] = ctx.reports["plan-memory"]["lower_bound_bytes"]
    return out


@dataclass
class Row:
    model: str
    launches: dict[str, int] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    max_error: dict[str, float] = field(default_factory=dict)
    same_pipeline: bool = False


def measure(name: str, build: Callable, repeat: int, tmp: Path) -> Row:
    path, x = build(tmp)
    graph = load_onnx(str(path))
    row = Row(name)
    pipes = pipelines()
    row.same_pipeline = pipes["fused"] == pipes["unfused"]
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    (want,) = sess.run(None, feed)[:1]
    libs = {}
    for variant, pipeline in pipes.items():
        if row.same_pipeline and variant == "unfused":
            libs[variant] = libs["fused"]  # identical pipelines: one library, measured twice
        else:
            libs[variant] = modelc.compile(
                graph, target="cpu", pipeline=pipeline, output_dir=tmp / f"{name}-{variant}"
            )
        report = libs[variant].manifest["kernels_report"]
        row.launches[variant] = len(report)
        row.moved[variant] = sum(r["bytes_read"] + r["bytes_written"] for r in report)
        row.memory[variant] = plans(graph, pipeline)
        got = libs[variant](x)
        got = got[0] if isinstance(got, tuple) else got
        row.max_error[variant] = float(np.abs(got - want).max())
    runners = {
        "fused": lambda: libs["fused"](x),
        "unfused": lambda: libs["unfused"](x),
        "onnxruntime": lambda: sess.run(None, feed),
    }
    row.ms = {k: 1e3 * v for k, v in interleaved_medians(runners, repeat).items()}
    return row


# ---- report ----------------------------------------------------------------------------------


def mib(n: int) -> str:
    return f"{n / 2**20:.2f}"


def render(rows: list[Row], repeat: int, seconds: float) -> str:
    pipes = pipelines()
    lines = [
        "# Passes: fusion and memory planning, measured",
        "",
        "Generated by `bench/passes.py` (do not edit by hand); every number below comes from one",
        f"run on {platform.machine()} with {os.cpu_count()} CPUs "
        f"({cpu_name()}), {repeat} timed runs per library (interleaved), "
        f"{seconds:.0f} s in all.",
        "",
        f"- fused = the cpu target's default pipeline: `{pipes['fused']}`",
        f"- unfused = the same without its fuse-* passes: `{pipes['unfused']}`",
        "- bytes moved: the sum over launches of the bytes each reads and writes (manifest",
        "  `kernels_report`), i.e. the memory traffic fusion removes",
        "- latency: median ms per inference in-process (modelc through ctypes), onnxruntime",
        "  CPUExecutionProvider as the peer, all measured in this run with idle threads passive",
        "",
        "## Fusion",
        "",
        "| model | launches fused | unfused | bytes moved fused (MiB) | unfused (MiB) | saved "
        "| fused ms | unfused ms | onnxruntime ms | fused/unfused | fused/ort | unfused/ort "
        "| max abs err vs ort |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ms = r.ms
        saved = 1 - r.moved["fused"] / r.moved["unfused"] if r.moved["unfused"] else 0.0
        lines.append(
            f"| {r.model} | {r.launches['fused']} | {r.launches['unfused']} "
            f"| {mib(r.moved['fused'])} | {mib(r.moved['unfused'])} | {saved:.0%} "
            f"| {ms['fused']:.2f} | {ms['unfused']:.2f} | {ms['onnxruntime']:.2f} "
            f"| {ms['fused'] / ms['unfused']:.2f} | {ms['fused'] / ms['onnxruntime']:.2f} "
            f"| {ms['unfused'] / ms['onnxruntime']:.2f} "
            f"| {max(r.max_error.values()):.1e} |"
        )
    if any(r.same_pipeline for r in rows):
        lines += [
            "",
            "The target's pipeline has no fuse-* pass yet: fused and unfused are one library.",
        ]
    lines += [
        "",
        "Ratios below 1 mean the left one is faster. fused/unfused is what fusion buys on this",
        "machine; */ort compares with onnxruntime.",
        "",
        "## Workspace (MiB)",
        "",
        "One lowered program per row, planned by each `plan-memory` strategy: naive (every",
        "temporary its own slot), greedy-by-size (largest first, smallest fitting gap),",
        "best-fit without in-place reuse, best-fit (the default: in-place reuse for kernels",
        "proven to read an input at the element they write, plus the best of several",
        "placements), and best-fit after `reorder-for-memory`. The lower bound is the largest",
        "total of simultaneously live temporaries, an output written in place over its input",
        "counted once: no placement of that schedule needs less.",
        "",
        "| model | pipeline | naive | greedy-by-size | best-fit, no in-place | best-fit "
        "| lower bound | best-fit + reorder | its lower bound | best-fit / naive |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for variant in ("fused", "unfused"):
            m = r.memory[variant]
            lines.append(
                f"| {r.model} | {variant} | {mib(m['naive'])} | {mib(m['greedy-by-size'])} "
                f"| {mib(m['best-fit{inplace=false}'])} | {mib(m['best-fit'])} "
                f"| {mib(m['bound'])} | {mib(m['best-fit+reorder'])} "
                f"| {mib(m['bound+reorder'])} | {m['best-fit'] / m['naive']:.1%} |"
            )
    lines += ["", "Exact bytes (fused pipeline):", ""]
    for r in rows:
        m = r.memory["fused"]
        figures = ", ".join(f"{k} {v:,}" for k, v in m.items())
        lines.append(f"- {r.model}: {figures}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15, help="timed runs per library (default 15)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    ap.add_argument("--out", default=str(ROOT / "docs" / "passes.md"))
    args = ap.parse_args()
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="modelc-bench-") as d:
        for name in args.models.split(","):
            t = time.perf_counter()
            rows.append(measure(name, MODELS[name], args.repeat, Path(d)))
            print(f"{name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    text = render(rows, args.repeat, time.perf_counter() - start)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
