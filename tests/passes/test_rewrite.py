"""The pattern matcher (passes/patterns.py) and the rewrite driver (passes/rewrite.py) that
canonicalize, fold-batchnorm and fuse-patterns are tables for."""

from __future__ import annotations

import pytest

from modelc.errors import VerifyError
from modelc.ir.parser import parse_graph
from modelc.ir.printer import print_graph
from modelc.ir.verify import verify
from modelc.passes.patterns import (
    Match,
    all_equal,
    const,
    either,
    exclusive,
    match_node,
    near,
    op,
    var,
    view_of,
)
from modelc.passes.rewrite import Rewriter, Rule, apply_rules, rule_table, select_rules

G = parse_graph(
    """
graph @g(%x: f32[4], %y: f32[4]) -> (%out, %d) {
  const %one: f32[] = dense<[1.0]>
  const %half: f32[4] = dense<[0.5, 0.5, 0.5, 0.5]>
  %a: f32[4] = mul(%one, %x)
  %b: f32[4] = sub(%a, %a)
  %c: f32[4] = add(%b, %y)
  %d: f32[4] = mul(%half, %c)
  %out: f32[4] = relu(%d)
  return %out, %d
}
"""
)


def _node(name: str):
    return G.producers[name]


def first(pattern, name: str) -> Match | None:
    return next(match_node(pattern, _node(name), view_of(G)), None)


def test_commutative_ops_match_either_order() -> None:
    m = first(op("mul", var("v"), const("k", all_equal(1))), "a")
    assert m is not None and m["v"] == "x" and m["k"] == "one"
    # sub is not commutative: the constant is never tried as the second operand
    assert first(op("sub", const(), var()), "b") is None


def test_a_repeated_name_binds_one_value() -> None:
    assert first(op("sub", var("v"), var("v")), "b") is not None
    assert first(op("add", var("v"), var("v")), "c") is None


def test_nested_patterns_record_named_nodes_and_the_interior() -> None:
    m = first(op("add", op("sub", var("p"), var("p"), name="s"), var("q")), "c")
    assert m is not None
    assert m.node("s").op == "sub" and m["q"] == "y" and m["p"] == "a"
    assert [n.op for n in m.interior] == ["add", "sub"]


def test_either_tries_alternatives_in_order() -> None:
    pat = either(op("relu", var("v")), op("mul", const(), var("v")), name="hit")
    m = first(pat, "d")
    assert m is not None and m["v"] == "c" and m["hit"] == "d"


def test_constant_predicates() -> None:
    assert first(op("mul", const(pred=near(1.0)), var()), "a") is not None
    assert first(op("mul", const(pred=near(1.001)), var()), "a") is None
    assert first(op("mul", const(pred=near(0.5)), var()), "d") is None  # not one element
    assert first(op("mul", const(pred=all_equal(0.5)), var()), "d") is not None


def test_exclusive_rejects_matches_whose_inside_is_read_elsewhere() -> None:
    # %d is a graph output and relu's input: a match through it would duplicate its work
    m = first(op("relu", op("mul", const(), var())), "out")
    assert m is not None and not exclusive(m, view_of(G))
    m = first(op("sub", op("mul", const(), var()), var()), "b")
    assert m is not None and exclusive(m, view_of(G))  # %a is read twice, both times inside
    m = first(op("add", op("sub", var(), var()), var()), "c")
    assert m is not None and exclusive(m, view_of(G))


def _relu_of_mul(m: Match, rw: Rewriter) -> str:
    return rw.add_node("relu", [m["v"]])


def test_driver_keeps_names_removes_dead_producers_and_verifies() -> None:
    rule = Rule("r", op("add", op("sub", var(), var()), var("v")), _relu_of_mul, "test")
    out, fired = apply_rules(G, [rule])
    verify(out)
    assert fired == {"r": 1}
    # the replacement took the replaced value's name; sub (and so mul) lost their last reader
    assert [n.op for n in out.nodes] == ["relu", "mul", "relu"]
    assert out.producers["c"].op == "relu" and out.producers["c"].inputs == ("y",)
    assert {c.name for c in out.constants} == {"half"}


def test_graph_outputs_keep_their_names() -> None:
    """%d = 0.5 * c is an output: replaced by the existing %c, %c takes the name %d (its
    readers follow). %a = 1 * x is not an output and simply becomes %x. An output computed
    from a graph input cannot be replaced by that input: inputs keep their names too."""
    rule = Rule("drop-scale", op("mul", const(), var("v")), lambda m, rw: m["v"], "test")
    out, fired = apply_rules(G, [rule])
    verify(out)
    assert fired == {"drop-scale": 2}
    assert out.outputs == ("out", "d")
    assert [(n.op, n.inputs, n.output.name) for n in out.nodes] == [
        ("sub", ("x", "x"), "b"),
        ("add", ("b", "y"), "d"),
        ("relu", ("d",), "out"),
    ]
    g = parse_graph(
        """
        graph @g(%x: f32[4]) -> (%y) {
          const %one: f32[] = dense<[1.0]>
          %y: f32[4] = mul(%one, %x)
          return %y
        }
        """
    )
    assert apply_rules(g, [rule]) == (g, {})


def test_rules_that_change_types_fail_loudly() -> None:
    bad = Rule("bad", op("relu", var("v")), lambda m, rw: rw.add_node("reduce_sum", [m["v"]]), "")
    with pytest.raises(VerifyError, match="keep shapes and dtypes"):
        apply_rules(G, [bad])


def test_rewrites_that_do_not_type_check_are_declined() -> None:
    def bad_reshape(m: Match, rw: Rewriter) -> str:
        return rw.add_node("reshape", [m["v"]], {"shape": [3]})  # 4 elements: a ShapeError

    assert apply_rules(G, [Rule("r", op("relu", var("v")), bad_reshape, "")]) == (G, {})


def test_declined_rewrites_roll_back_what_they_built() -> None:
    def build_then_decline(m: Match, rw: Rewriter) -> None:
        rw.add_node("neg", [m["v"]])
        rw.add_const([1.0], "scratch")
        return None

    out, fired = apply_rules(G, [Rule("noop", op("relu", var("v")), build_then_decline, "")])
    assert fired == {} and out is G


def test_rule_tables_print_and_select() -> None:
    rules = (
        Rule("a", None, lambda m, rw: None, "does a"),
        Rule("b", None, lambda m, rw: None, "b"),
    )
    assert "| `a` | does a |" in rule_table(rules)
    assert [r.name for r in select_rules(rules, "b")] == ["a"]
    with pytest.raises(ValueError, match="unknown rule"):
        select_rules(rules, "c")


def test_printing_the_result_round_trips() -> None:
    rule = Rule("r", op("add", op("sub", var(), var()), var("v")), _relu_of_mul, "test")
    out, _ = apply_rules(G, [rule])
    assert parse_graph(print_graph(out)) == out


def test_the_docs_list_every_rule_table() -> None:
    """docs/graph_passes.md shows each pass's table as the code has it."""
    from pathlib import Path

    import modelc
    from modelc.passes import canonicalize, fold_batchnorm, fuse_patterns, layout

    doc = (Path(modelc.__file__).parent / "docs" / "graph_passes.md").read_text()
    for module in (canonicalize, fold_batchnorm, fuse_patterns, layout):
        assert rule_table(module.RULES) in doc, f"update docs/graph_passes.md: {module.__name__}"
