"""Run a single loop-IR kernel through the C renderer and the host compiler.

Used by op tests (lowering vs numpy reference, one op at a time) and by tuners that time one
kernel. Libraries are cached per process by source text, so a test that checks 50 shapes of
the same op compiles each distinct kernel once.
"""

from __future__ import annotations

import ctypes
import hashlib
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modelc.codegen.c import C_PRELUDE, c_renderer
from modelc.ir.loop import Kernel
from modelc.runtime.cc import compile_shared

_LIBS: dict[str, ctypes.CDLL] = {}  # source hash -> loaded library (a cache, not state)
_TMP = tempfile.TemporaryDirectory(prefix="modelc-kernels-")


def kernel_source(kernel: Kernel) -> str:
    body = c_renderer().kernel(kernel).replace("static void", "void", 1)
    return C_PRELUDE + "\n" + body + "\n"


def load_kernel(kernel: Kernel) -> ctypes._CFuncPtr:
    src = kernel_source(kernel)
    key = hashlib.sha256(src.encode()).hexdigest()[:16]
    lib = _LIBS.get(key)
    if lib is None:
        d = Path(_TMP.name)
        c_path = d / f"k_{key}.c"
        c_path.write_text(src)
        so = compile_shared([c_path], d / f"k_{key}.so")
        lib = ctypes.CDLL(str(so))
        _LIBS[key] = lib
    fn = getattr(lib, kernel.name)
    fn.restype = None
    return fn


def run_kernel(kernel: Kernel, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Call `kernel` on `inputs` (matched to its non-output params in order); returns outputs
    as flat arrays of the params' dtypes and sizes (reshape them yourself)."""
    fn = load_kernel(kernel)
    in_params = [p for p in kernel.params if not p.is_output]
    out_params = [p for p in kernel.params if p.is_output]
    if len(inputs) != len(in_params):
        raise ValueError(f"kernel {kernel.name} takes {len(in_params)} inputs, got {len(inputs)}")
    args = []
    keep = []
    for p, x in zip(in_params, inputs):
        a = np.ascontiguousarray(x, dtype=p.dtype.numpy).reshape(-1)
        if a.size != p.size:
            raise ValueError(f"{p.name}: {a.size} elements, kernel expects {p.size}")
        keep.append(a)
        args.append(a.ctypes.data_as(ctypes.c_void_p))
    outs = [np.zeros(p.size, dtype=p.dtype.numpy) for p in out_params]
    args += [o.ctypes.data_as(ctypes.c_void_p) for o in outs]
    fn(*args)
    return outs
