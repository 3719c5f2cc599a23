"""Pipeline strings, the pass registry and the pass context."""

from __future__ import annotations

import numpy as np
import pytest

from modelc.errors import PipelineError
from modelc.ir import GraphBuilder, TensorType
from modelc.ir.dtypes import f32
from modelc.passes.registry import (
    PassContext,
    all_passes,
    format_pipeline,
    parse_pipeline,
    run_pipeline,
)


def _graph():
    b = GraphBuilder("g", fold=False)
    x = b.add_input("x", TensorType((4,), f32))
    c1 = b.add_constant(np.ones(4, np.float32), "c1")
    c2 = b.add_constant(np.full(4, 2, np.float32), "c2")
    k = b.add("add", c1, c2)  # constant subgraph: folds
    y = b.add("mul", x, k)
    b.add("relu", y)  # dead
    b.set_outputs([y])
    return b.build()


def test_parse_and_format_round_trip() -> None:
    passes = parse_pipeline("fold-constants, eliminate-dead-code,plan-memory{strategy=naive}")
    assert [p.name for p in passes] == ["fold-constants", "eliminate-dead-code", "plan-memory"]
    assert (
        format_pipeline(passes) == "fold-constants,eliminate-dead-code,plan-memory{strategy=naive}"
    )
    assert parse_pipeline(format_pipeline(passes)) == passes


@pytest.mark.parametrize(
    "text, message",
    [
        ("no-such-pass", "unknown pass 'no-such-pass'"),
        ("plan-memory{bogus=1}", "unknown option 'bogus'"),
        ("plan-memory{strategy=wrong}", "unknown strategy"),
        ("fold-constants{max_bytes=lots}", "not a valid int"),
        ("fold-constants{max_bytes", "unclosed"),
        ("lower-to-loops{parallel}", "not key=value"),
    ],
)
def test_bad_pipelines(text: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        parse_pipeline(text)


def test_registry_has_core_passes() -> None:
    names = set(all_passes())
    assert {"fold-constants", "eliminate-dead-code", "lower-to-loops", "plan-memory"} <= names


def test_fold_and_dce_with_verify_and_dump(tmp_path, capsys) -> None:
    g = _graph()
    ctx = PassContext(verify=True, print_after_all=True, dump_dir=tmp_path)
    out = run_pipeline(g, parse_pipeline("fold-constants,eliminate-dead-code"), ctx)
    assert [n.op for n in out.nodes] == ["mul"]
    np.testing.assert_array_equal(out.constant(out.nodes[0].inputs[1]), np.full(4, 3.0))
    assert [name for name, _ in ctx.timings] == ["fold-constants", "eliminate-dead-code"]
    assert ctx.reports["fold-constants"]["folded"] == 1
    assert ctx.reports["eliminate-dead-code"]["nodes_removed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00-fold-constants.ir",
        "01-eliminate-dead-code.ir",
    ]
    assert "IR after fold-constants" in capsys.readouterr().err
    # idempotence: a second run changes nothing
    again = run_pipeline(out, parse_pipeline("fold-constants,eliminate-dead-code"), PassContext())
    assert again == out


def test_program_pass_before_lowering_is_rejected() -> None:
    with pytest.raises(PipelineError, match="runs on a program"):
        run_pipeline(_graph(), parse_pipeline("plan-memory"), PassContext())
