"""`cpu`: float C for the host, built with the host C compiler and run through ctypes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelc.codegen.c import C_DIALECT
from modelc.codegen.c_program import layout_weights, render_header, render_makefile, render_source
from modelc.errors import ToolchainError
from modelc.ir.program import Program
from modelc.runtime.cc import compile_flags, compile_shared, find_cc
from modelc.targets.registry import Target, register_target

LIBRARY = "libmodel.so"
PREFIX = "modelc"
CPU_PIPELINE = (
    "fold-qdq,fold-constants,canonicalize,fold-batchnorm,fuse-patterns,eliminate-dead-code,"
    "fuse-epilogue,fuse-elementwise,reorder-for-memory,lower-to-loops,plan-memory"
)


def emit_c(program: Program, out: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    prefix = str(options.get("prefix", PREFIX))
    weights = layout_weights(program)
    (out / "weights.bin").write_bytes(weights.blob)
    (out / "model.h").write_text(render_header(program, prefix))
    (out / "model.c").write_text(render_source(program, weights, prefix))
    opt = str(options.get("opt_level", "-O3"))
    try:
        flags = compile_flags(find_cc(), opt_level=opt)
    except ToolchainError:  # no compiler here: the Makefile still gets the standard flags
        flags = [opt, "-march=native", "-shared", "-fPIC", "-std=gnu11", "-fopenmp"]
    flags += list(options.get("extra_cflags", ()))
    (out / "Makefile").write_text(render_makefile(prefix, flags, LIBRARY))
    return {
        "prefix": prefix,
        "library": LIBRARY,
        "sources": ["model.c", "model.h"],
        "weights_file": "weights.bin",
        "weights_bytes": len(weights.blob),
        "cflags": flags,
    }


def build_c(out: Path, options: Mapping[str, Any]) -> Path:
    """Build with the flags `emit_c` chose (recorded in the manifest and the Makefile)."""
    return compile_shared(["model.c"], LIBRARY, cwd=out, flags=options.get("cflags"))


def load_c(out: Path, manifest: Mapping[str, Any]) -> Any:
    from modelc.runtime.ctypes_runner import CtypesRunner

    return CtypesRunner(out / manifest.get("library", LIBRARY), manifest)


CPU = register_target(
    Target(
        name="cpu",
        description="float32 C for the host CPU (cc -O3 -march=native, OpenMP), run via ctypes",
        pipeline=CPU_PIPELINE,
        emit=emit_c,
        build=build_c,
        load=load_c,
        capabilities=C_DIALECT.capabilities,
    )
)


def read_manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())
