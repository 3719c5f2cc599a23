"""Golden, idempotence and numeric tests of fold-constants and eliminate-dead-code."""

from __future__ import annotations

from modelc.testing import check_pass

BEFORE = """
graph @g(%x: f32[4]) -> (%y) {
  const %c1: f32[4] = dense<[1.0, 1.0, 1.0, 1.0]>
  const %c2: f32[4] = dense<[2.0, 2.0, 2.0, 2.0]>
  const %unused: f32[2] = dense<[5.0, 6.0]>
  %k: f32[4] = add(%c1, %c2)
  %y: f32[4] = mul(%x, %k)
  %dead: f32[4] = relu(%y)
  return %y
}
"""


def test_fold_constants_golden() -> None:
    after = """
    graph @g(%x: f32[4]) -> (%y) {
      const %k: f32[4] = dense<[3.0, 3.0, 3.0, 3.0]>   // c1 + c2, computed at compile time
      %y: f32[4] = mul(%x, %k)
      %dead: f32[4] = relu(%y)
      return %y
    }
    """
    check_pass("fold-constants", BEFORE, after)


def test_eliminate_dead_code_golden() -> None:
    after = """
    graph @g(%x: f32[4]) -> (%y) {
      const %c1: f32[4] = dense<[1.0, 1.0, 1.0, 1.0]>
      const %c2: f32[4] = dense<[2.0, 2.0, 2.0, 2.0]>
      %k: f32[4] = add(%c1, %c2)
      %y: f32[4] = mul(%x, %k)
      return %y
    }
    """
    check_pass("eliminate-dead-code", BEFORE, after)


def test_fold_respects_max_bytes() -> None:
    check_pass("fold-constants{max_bytes=8}", BEFORE, BEFORE)
