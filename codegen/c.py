"""The C dialect (cpu target; the mcu target reuses it with its own capabilities)."""

from __future__ import annotations

from modelc.codegen.cfamily import (
    BF16,
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
    emulated={"bf16": BF16},
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

/* bf16: the upper half of a float; stored round-to-nearest-even, NaN kept quiet. */
static inline float modelc_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static inline uint16_t modelc_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static inline float modelc_bf16_round(float f) { return modelc_bf16_to_f32(modelc_f32_to_bf16(f)); }
"""


def c_renderer() -> CFamilyRenderer:
    return CFamilyRenderer(C_DIALECT)
