"""Host C compiler driver.

Builds generated C into a shared library with the host compiler (`$CC`, else `cc`). Flags are
the issue's contract: `-O3 -march=native -shared -fPIC`, plus OpenMP when the compiler has it.
Failures raise ToolchainError with the compiler's own message, so a renderer bug shows the
offending line instead of a silent wrong result.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from modelc.errors import ToolchainError

BASE_FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=gnu11")
WARN_FLAGS = ("-Wno-unused-variable", "-Wno-unused-function")


def find_cc() -> str:
    cc = os.environ.get("CC", "cc")
    path = shutil.which(cc)
    if path is None:
        raise ToolchainError(
            f"no C compiler found ({cc!r} is not on PATH): install gcc (apt-get install gcc) "
            "or set CC"
        )
    return path


@functools.lru_cache(maxsize=4)
def has_openmp(cc: str) -> bool:
    """Whether `cc -fopenmp` links (gcc does; some clang installs lack libomp)."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "t.c"
        src.write_text(
            "int f(void){int s=0;\n#pragma omp parallel for reduction(+:s)\n"
            "for(int i=0;i<4;i++)s+=i;return s;}\n"
        )
        r = subprocess.run(
            [cc, "-fopenmp", "-shared", "-fPIC", str(src), "-o", str(Path(d) / "t.so")],
            capture_output=True,
        )
        return r.returncode == 0


def compile_flags(cc: str, *, openmp: bool = True, opt_level: str = "-O3") -> list[str]:
    """The default flags, with `opt_level` in place of -O3 (conformance runs use -O1: a
    thousand tiny libraries build faster and test the same C)."""
    flags = [opt_level if f == "-O3" else f for f in BASE_FLAGS] + list(WARN_FLAGS)
    if openmp and has_openmp(cc):
        flags.append("-fopenmp")
    return flags


def compile_shared(
    sources: Sequence[str | Path],
    output: str | Path,
    *,
    cwd: str | Path | None = None,
    openmp: bool = True,
    extra_flags: Sequence[str] = (),
    flags: Sequence[str] | None = None,
) -> Path:
    """Compile and link `sources` into the shared library `output` (with `flags` in place of
    the defaults when given)."""
    cc = find_cc()
    base = list(flags) if flags is not None else compile_flags(cc, openmp=openmp)
    cmd = [cc, *base, *extra_flags, *map(str, sources), "-o", str(output), "-lm"]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        head = "\n".join(msg[:20])
        raise ToolchainError(f"C compilation failed ({' '.join(cmd[:2])} ...):\n{head}")
    return Path(cwd or ".") / output if cwd else Path(output)
