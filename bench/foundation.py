"""Foundation benchmark: compile time, memory plan and latency of the onnx wheel's real
architectures (onnx/backend/test/data/light), modelc `cpu` against onnxruntime in the same run.

    .venv/bin/python bench/foundation.py [--models resnet50,squeezenet] [--repeat 5]

Prints one row per model: modelc compile seconds (import + passes + C build), onnxruntime
session-creation seconds, workspace bytes (planner / naive sum / lower bound), and median
latency of both with the ratio modelc/onnxruntime (above 1 = modelc slower). Timings are for
information on a shared machine; nothing here is a pass/fail test.
"""

from __future__ import annotations

import os

# Both runtimes share two cores in one process: threads that spin while idle (libgomp's and
# onnxruntime's defaults) steal the other runtime's core and inflate its timings tenfold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import modelc

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def dummy(shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated names (default: all nine)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    names = sorted(p.stem.removeprefix("light_") for p in LIGHT.glob("light_*.onnx"))
    if args.models:
        names = [n for n in names if n in args.models.split(",")]

    header = (
        f"{'model':<14}{'compile s':>10}{'ort init s':>11}{'ws MiB':>8}{'naive':>8}{'bound':>8}"
        f"{'saved':>7}{'modelc ms':>11}{'ort ms':>9}{'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        path = LIGHT / f"light_{name}.onnx"
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            lib = modelc.compile(str(path), target="cpu", output_dir=d)
            compile_s = time.perf_counter() - t0
            feeds = {t.name: dummy(t.shape) for t in lib.inputs}
            t0 = time.perf_counter()
            so = ort.SessionOptions()
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.log_severity_level = 3
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            ort_init = time.perf_counter() - t0
            ort_feeds = {i.name: feeds[i.name] for i in sess.get_inputs() if i.name in feeds}
            mc = median_time(lambda lib=lib, feeds=feeds: lib.run(feeds), args.repeat)
            rt = median_time(lambda s=sess, f=ort_feeds: s.run(None, f), args.repeat)
            m = lib.manifest
            ws, naive, bound = (
                m["workspace_bytes"],
                m["workspace_naive_bytes"],
                m["workspace_lower_bound_bytes"],
            )
            saved = 1 - ws / naive if naive else 0.0
            print(
                f"{name:<14}{compile_s:>10.2f}{ort_init:>11.2f}{mib(ws):>8}{mib(naive):>8}"
                f"{mib(bound):>8}{saved:>7.0%}{mc * 1e3:>11.1f}{rt * 1e3:>9.1f}{mc / rt:>7.2f}"
            )
            if name == "resnet50":
                timings = ", ".join(f"{p['name']} {p['seconds']:.2f}s" for p in m["passes"])
                print(f"{'':<14}resnet50 compile breakdown: {timings}")


if __name__ == "__main__":
    main()
