"""`make demo`: compile examples/demo_cnn.onnx for the CPU and check it against onnxruntime.

Prints modelc's output beside onnxruntime's for one seeded input and the largest difference, and
exits non-zero when they differ by more than the float tolerance (1e-4), so the demo doubles as a
smoke test of the whole toolchain: import, passes, C code generation, host compiler, loader.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

MODEL = Path(__file__).resolve().parent / "demo_cnn.onnx"
TOLERANCE = 1e-4


def main() -> int:
    import onnxruntime as ort

    import modelc

    start = time.perf_counter()
    try:
        lib = modelc.compile(str(MODEL), target="cpu")
    except modelc.Error as err:
        print(f"demo: modelc could not compile {MODEL.name}: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(f"compiled {MODEL.name} for target cpu in {seconds:.2f} s")

    (name, shape, _dtype), *_ = lib.inputs
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = lib.run({name: x})
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, {name: x})))

    worst = 0.0
    for out, ref in want.items():
        mine = got.get(out)
        if mine is None or mine.shape != ref.shape:
            found = "nothing" if mine is None else f"shape {mine.shape}"
            print(f"output {out!r}: onnxruntime gives shape {ref.shape}, modelc {found}")
            return 1
        diff = float(np.max(np.abs(mine.astype(np.float64) - ref))) if ref.size else 0.0
        worst = max(worst, diff)
        print(f"\noutput {out!r} {tuple(ref.shape)}")
        print(f"{'index':>6} {'modelc':>14} {'onnxruntime':>14} {'|diff|':>10}")
        for i, (a, b) in enumerate(zip(mine.ravel(), ref.ravel(), strict=True)):
            print(f"{i:>6} {a:>14.8f} {b:>14.8f} {abs(float(a) - float(b)):>10.2e}")
    verdict = "OK" if worst <= TOLERANCE else "MISMATCH"
    print(f"\nmax abs difference {worst:.3e} (tolerance {TOLERANCE:g}): {verdict}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
