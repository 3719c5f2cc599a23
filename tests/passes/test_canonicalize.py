"""Golden, idempotence and numeric tests of canonicalize (every rule of its table fires in at
least one test here), and the cases where a rule must not fire."""

from __future__ import annotations

import pytest

from modelc.errors import PipelineError
from modelc.passes.canonicalize import RULES
from modelc.passes.registry import parse_pipeline
from modelc.testing import check_pass


def test_algebraic_identities() -> None:
    before = """
    graph @g(%x: f32[2,4]) -> (%y) {
      const %one: f32[4] = dense<[1.0, 1.0, 1.0, 1.0]>
      const %zero: f32[] = dense<[0.0]>
      const %ones: f32[1,1] = dense<[1.0]>
      %a: f32[2,4] = mul(%one, %x)       // 1 * x
      %b: f32[2,4] = add(%a, %zero)      // x + 0
      %c: f32[2,4] = sub(%b, %zero)      // x - 0
      %d: f32[2,4] = div(%c, %ones)      // x / 1
      %e: f32[2,4] = pow(%d, %ones)      // x ** 1
      %f: f32[2,4] = cast(%e) {to=!f32}  // a cast to its own dtype
      %y: f32[2,4] = relu(%f)
      return %y
    }
    """
    after = """
    graph @g(%x: f32[2,4]) -> (%y) {
      %y: f32[2,4] = relu(%x)
      return %y
    }
    """
    check_pass("canonicalize", before, after)


def test_identities_that_broadcast_or_are_outputs_stay() -> None:
    """x * ones([3,1,1]) grows x from [2,4] to [3,2,4]: not an identity. `%y = x * 1` cannot
    become the graph input %x (outputs and inputs both keep their names); 1.0000001 is not 1."""
    before = """
    graph @g(%x: f32[2,4]) -> (%grown, %y, %z) {
      const %ones: f32[3,1,1] = dense<[1.0, 1.0, 1.0]>
      const %one: f32[] = dense<[1.0]>
      const %almost: f32[] = dense<[1.0000001]>
      %grown: f32[3,2,4] = mul(%x, %ones)
      %y: f32[2,4] = mul(%x, %one)
      %z: f32[2,4] = mul(%x, %almost)
      return %grown, %y, %z
    }
    """
    check_pass("canonicalize", before, before)


def test_a_removed_output_node_passes_its_name_on() -> None:
    """copy(w) and w * 1 as graph outputs: the node goes, the value it copied takes its name
    (lowering copies into the caller's buffer only where it must: inputs, constants, views)."""
    before = """
    graph @g(%x: f32[2,4]) -> (%y, %z) {
      const %one: f32[] = dense<[1.0]>
      %w: f32[2,4] = exp(%x)
      %v: f32[2,4] = neg(%x)
      %y: f32[2,4] = copy(%w)
      %z: f32[2,4] = mul(%v, %one)
      return %y, %z
    }
    """
    after = """
    graph @g(%x: f32[2,4]) -> (%y, %z) {
      %y: f32[2,4] = exp(%x)
      %z: f32[2,4] = neg(%x)
      return %y, %z
    }
    """
    check_pass("canonicalize", before, after)


def test_reshape_chains() -> None:
    before = """
    graph @g(%x: f32[2,3,4]) -> (%out) {
      %r1: f32[6,4] = reshape(%x) {shape=[6, 4]}
      %r2: f32[24] = reshape(%r1) {shape=[24]}
      %r3: f32[4,6] = reshape(%r2) {shape=[4, 6]}
      %back: f32[2,3,4] = reshape(%r3) {shape=[2, 3, 4]}   // back to x's shape: no-op
      %e: f32[2,3,4] = exp(%back)
      %out: f32[4,6] = reshape(%e) {shape=[4, 6]}
      return %out
    }
    """
    after = """
    graph @g(%x: f32[2,3,4]) -> (%out) {
      %e: f32[2,3,4] = exp(%x)
      %out: f32[4,6] = reshape(%e) {shape=[4, 6]}
      return %out
    }
    """
    check_pass("canonicalize", before, after)


def test_transposes_compose_cancel_and_become_views() -> None:
    before = """
    graph @g(%x: f32[2,3,4], %u: f32[1,5,1]) -> (%a, %b, %c, %d) {
      %t1: f32[4,2,3] = transpose(%x) {perm=[2, 0, 1]}
      %t2: f32[2,3,4] = transpose(%t1) {perm=[1, 2, 0]}   // cancels t1
      %a: f32[2,3,4] = neg(%t2)
      %t3: f32[3,2,4] = transpose(%x) {perm=[1, 0, 2]}
      %t4: f32[4,2,3] = transpose(%t3) {perm=[2, 1, 0]}   // composes with t3
      %b: f32[4,2,3] = neg(%t4)
      %t5: f32[5,1,1] = transpose(%u) {perm=[1, 0, 2]}    // moves size-1 dims only
      %t6: f32[1,5,1] = transpose(%u) {perm=[0, 1, 2]}    // identity
      %c: f32[5,1,1] = neg(%t5)
      %d: f32[1,5,1] = neg(%t6)
      return %a, %b, %c, %d
    }
    """
    after = """
    graph @g(%x: f32[2,3,4], %u: f32[1,5,1]) -> (%a, %b, %c, %d) {
      %a: f32[2,3,4] = neg(%x)
      %t4: f32[4,2,3] = transpose(%x) {perm=[2, 0, 1]}
      %b: f32[4,2,3] = neg(%t4)
      %t5: f32[5,1,1] = reshape(%u) {shape=[5, 1, 1]}
      %c: f32[5,1,1] = neg(%t5)
      %d: f32[1,5,1] = neg(%u)
      return %a, %b, %c, %d
    }
    """
    check_pass("canonicalize", before, after)


def test_fold_cse_and_dead_code() -> None:
    """Two heads read one projection; a constant subgraph folds; dead nodes and copies go."""
    before = """
    graph @g(%x: f32[4]) -> (%y) {
      const %two: f32[] = dense<[2.0]>
      const %two_again: f32[] = dense<[2.0]>
      const %c1: f32[4] = dense<[1.0, 2.0, 3.0, 4.0]>
      %k: f32[4] = mul(%c1, %two)
      %p1: f32[4] = mul(%x, %two)
      %p2: f32[4] = mul(%two_again, %x)    // same value as p1 (commutative, equal constant)
      %h1: f32[4] = add(%p1, %k)
      %h2: f32[4] = add(%p2, %k)
      %c: f32[4] = copy(%h2)
      %unused: f32[4] = exp(%c)
      %y: f32[4] = sub(%h1, %c)
      return %y
    }
    """
    after = """
    graph @g(%x: f32[4]) -> (%y) {
      const %two: f32[] = dense<[2.0]>
      const %k: f32[4] = dense<[2.0, 4.0, 6.0, 8.0]>
      %p1: f32[4] = mul(%x, %two)
      %h1: f32[4] = add(%p1, %k)
      %y: f32[4] = sub(%h1, %h1)
      return %y
    }
    """
    check_pass("canonicalize", before, after)


def test_expand_noop_and_disabled_rules() -> None:
    before = """
    graph @g(%x: f32[2,3]) -> (%y) {
      %e: f32[2,3] = expand(%x) {shape=[1, 3]}
      %a: f32[2,3] = exp(%e)
      %b: f32[2,3] = exp(%e)
      %y: f32[2,3] = add(%a, %b)
      return %y
    }
    """
    after = """
    graph @g(%x: f32[2,3]) -> (%y) {
      %a: f32[2,3] = exp(%x)
      %b: f32[2,3] = exp(%x)
      %y: f32[2,3] = add(%a, %b)
      return %y
    }
    """
    check_pass("canonicalize{disable=cse}", before, after)


def test_fold_respects_the_size_limit() -> None:
    before = """
    graph @g(%x: f32[4]) -> (%y) {
      const %c: f32[4] = dense<[1.0, 2.0, 3.0, 4.0]>
      %k: f32[4] = exp(%c)
      %y: f32[4] = add(%x, %k)
      return %y
    }
    """
    check_pass("canonicalize{max_fold_bytes=8}", before, before)


def test_rule_table_is_documented() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    assert all(r.doc and len(r.doc) < 100 for r in RULES)
    with pytest.raises(PipelineError, match="unknown rule"):
        parse_pipeline("canonicalize{disable=no-such-rule}")
