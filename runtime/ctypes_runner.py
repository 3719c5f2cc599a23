"""Load a built model library with ctypes and call its run function.

The runner owns a 64-byte aligned workspace, reused across calls (one runner is not
thread-safe; make one per thread). Inputs are checked by the caller (`CompiledModel`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelc.errors import ToolchainError
from modelc.ir.dtypes import parse_dtype
from modelc.ir.program import ALIGN


class CtypesRunner:
    def __init__(self, library: Path, manifest: Mapping[str, Any]) -> None:
        if not library.exists():
            raise ToolchainError(
                f"{library} does not exist: build it with `make -C {library.parent}` "
                "(needs a C compiler)"
            )
        try:
            self.lib = ctypes.CDLL(str(library.resolve()))
        except OSError as e:
            raise ToolchainError(f"cannot load {library}: {e}") from None
        prefix = manifest.get("prefix", "modelc")
        self.fn = getattr(self.lib, f"{prefix}_run")
        self.fn.restype = ctypes.c_int
        self.fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.outputs = [
            (tuple(o["shape"]), parse_dtype(o["dtype"]).numpy) for o in manifest["outputs"]
        ]
        nbytes = int(manifest["workspace_bytes"])
        self._ws_raw = np.zeros(nbytes + ALIGN, dtype=np.uint8)
        off = (-self._ws_raw.ctypes.data) % ALIGN
        self.workspace = self._ws_raw[off : off + nbytes]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        ins = [np.ascontiguousarray(x) for x in inputs]
        outs = [np.empty(shape, dtype) for shape, dtype in self.outputs]
        in_ptrs = (ctypes.c_void_p * max(1, len(ins)))(*[x.ctypes.data for x in ins])
        out_ptrs = (ctypes.c_void_p * max(1, len(outs)))(*[o.ctypes.data for o in outs])
        rc = self.fn(in_ptrs, out_ptrs, ctypes.c_void_p(self.workspace.ctypes.data))
        if rc != 0:
            raise ToolchainError(f"model run function returned {rc}")
        return outs
