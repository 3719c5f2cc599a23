"""The C dialect (cpu target; the mcu target reuses it with its own capabilities)."""

from __future__ import annotations

from modelc.codegen.cfamily import (
    C_TYPES,
    FLOAT_INTRINSICS,
    INT_INTRINSICS,
    Capabilities,
    CFamilyRenderer,
    Dialect,
)

C_DIALECT = Dialect(
    name="c",
    types=C_TYPES,
    float_intrinsics=FLOAT_INTRINSICS,
    int_intrinsics=INT_INTRINSICS,
    loop_pragmas={
        "parallel": "#pragma omp parallel for schedule(static)",
        "vectorized": "",  # -O3 auto-vectorizes contiguous inner loops; a simd pragma can
        # change float reductions, so it is left to kernels that ask for it explicitly.
        "unrolled": "#pragma GCC unroll 4",
    },
    capabilities=Capabilities(vector_bits=256, has_fp16=True, has_openmp=True),
)

C_PRELUDE = """\
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline int64_t modelc_ipow(int64_t b, int64_t e) {
  int64_t r = 1;
  while (e > 0) { if (e & 1) r *= b; b *= b; e >>= 1; }
  return r;
}
"""


def c_renderer() -> CFamilyRenderer:
    return CFamilyRenderer(C_DIALECT)
