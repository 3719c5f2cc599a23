"""The conformance report: results -> docs/conformance.json (the record the regression check
compares against) -> docs/conformance.md (the same numbers for people).

The markdown is rendered from the json alone, so the test can re-render it and prove that the
committed page and the committed record agree.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.runner import Result


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# The ops the issue lists, by the model family that needs them; "in-scope pass rate" is over
# their cases. (An op in two families is listed under both; it counts once.)
SCOPE: dict[str, tuple[str, ...]] = {
    "foundation": _names(
        "Conv Gemm MatMul Add Sub Mul Div Sum Relu LeakyRelu Clip Sigmoid Tanh HardSigmoid "
        "HardSwish BatchNormalization MaxPool AveragePool GlobalAveragePool Flatten Reshape "
        "Transpose Concat Softmax Constant ConstantOfShape Identity Dropout Pad Shape Gather "
        "Unsqueeze Squeeze"
    ),
    "transformers": _names(
        "MatMul LayerNormalization Gelu Erf Softmax Gather Where Expand Slice Split Squeeze "
        "Unsqueeze ReduceMean ReduceSum ReduceMax ReduceMin Pow Sqrt Reciprocal Neg Exp Log Cast "
        "Equal Less Greater Not And Range Tile Einsum"
    ),
    "detection": _names(
        "ConvTranspose Resize Upsample InstanceNormalization PRelu Min Max ArgMax TopK "
        "GlobalMaxPool DepthToSpace SpaceToDepth LRN"
    ),
    "quantized": _names(
        "QuantizeLinear DequantizeLinear QLinearConv QLinearMatMul MatMulInteger ConvInteger"
    ),
}
IN_SCOPE: frozenset[str] = frozenset(op for ops in SCOPE.values() for op in ops)
KINDS = ("mismatch", "error", "crash", "timeout")
COMMAND = "python tests/conformance/runner.py --write"


def scope_of(op: str) -> str:
    """The first family that lists `op`, or "" when it is out of the issue's scope."""
    return next((family for family, ops in SCOPE.items() if op in ops), "")


def summarize(results: Sequence[Result], onnx_version: str) -> dict[str, Any]:
    """The json record of a full run (results sorted by name)."""
    cases: dict[str, dict[str, Any]] = {}
    ops: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        rec: dict[str, Any] = {"op": r.op, "status": r.status}
        if r.kind:
            rec["kind"] = r.kind
        if r.reason:
            rec["reason"] = r.reason
        if r.out_of_scope:
            rec["out_of_scope_types"] = list(r.out_of_scope_types)
        if r.folded and r.status == "passed":
            rec["folded"] = True
        cases[r.name] = rec
        c = ops[r.op]
        c["cases"] += 1
        c[r.status] += 1
        c["out_of_scope"] += int(r.out_of_scope)
    per_op = {
        op: {
            "scope": scope_of(op),
            **{k: c[k] for k in ("cases", "passed", "failed", "unsupported", "out_of_scope")},
        }
        for op, c in sorted(ops.items())
    }
    return {
        "generated_by": COMMAND,
        "onnx_version": onnx_version,
        "target": "cpu",
        "totals": _totals(cases.values()),
        "in_scope": {
            "ops": sorted(IN_SCOPE),
            **_totals([c for c in cases.values() if c["op"] in IN_SCOPE], in_scope=True),
        },
        "ops": per_op,
        "cases": cases,
    }


def _totals(records: Iterable[Mapping[str, Any]], in_scope: bool = False) -> dict[str, Any]:
    """Counts over case records; for the in-scope totals, out-of-scope types are set apart and
    the pass rate is over the rest."""
    cases = list(records)
    status = Counter(c["status"] for c in cases)
    kinds = Counter(c.get("kind", "") for c in cases if c["status"] == "failed")
    out: dict[str, Any] = {"cases": len(cases)}
    counted = len(cases)
    if in_scope:
        oos = sum(1 for c in cases if "out_of_scope_types" in c)
        counted -= oos
        out.update(out_of_scope=oos, counted=counted)
    out.update(
        passed=status["passed"],
        failed=status["failed"],
        unsupported=status["unsupported"] - (out.get("out_of_scope", 0)),
        failed_by_kind={k: kinds[k] for k in KINDS},
        pass_rate=round(100.0 * status["passed"] / counted, 1) if counted else 0.0,
    )
    return out


def dump_json(doc: Mapping[str, Any]) -> str:
    """The record as json with one op and one case per line: a change to a case is a one-line
    diff, and the file stays half the size of an indented dump."""
    lines = ["{"]
    keys = sorted(doc)
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        value = doc[key]
        if (
            isinstance(value, Mapping)
            and value
            and all(isinstance(v, Mapping) for v in value.values())
        ):
            lines.append(f" {json.dumps(key)}: {{")
            items = sorted(value.items())
            for j, (name, rec) in enumerate(items):
                sep = "," if j < len(items) - 1 else ""
                lines.append(f"  {json.dumps(name)}: {json.dumps(rec, sort_keys=True)}{sep}")
            lines.append(f" }}{comma}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, sort_keys=True)}{comma}")
    return "\n".join(lines) + "\n}\n"


def totals_lines(doc: Mapping[str, Any]) -> list[str]:
    """The totals as they appear in docs/conformance.md (the test looks for them there)."""
    t, s = doc["totals"], doc["in_scope"]
    return [
        f"**All node cases:** {t['cases']} cases: {t['passed']} passed ({t['pass_rate']}%), "
        f"{t['failed']} failed, {t['unsupported']} unsupported.",
        f"**In-scope ops ({len(s['ops'])}):** {s['cases']} cases, of which {s['out_of_scope']} "
        f"use out-of-scope element types; of the other {s['counted']}: {s['passed']} passed "
        f"({s['pass_rate']}%), {s['failed']} failed, {s['unsupported']} unsupported.",
    ]


def _op_sort_key(op: str) -> tuple[bool, str]:
    return ("::" in op, op.lower())


def render_markdown(doc: Mapping[str, Any]) -> str:
    """docs/conformance.md from the json record."""
    t, s = doc["totals"], doc["in_scope"]
    lines = [
        "# ONNX conformance of the `cpu` target",
        "",
        f"<!-- Generated by `{doc['generated_by']}` from docs/conformance.json; do not edit. -->",
        "",
        f"Every node case of the ONNX backend test suite (onnx {doc['onnx_version']}, rebuilt by",
        "`onnx.backend.test.case.node.collect_testcases()`), compiled with",
        '`modelc.compile(model, target="cpu")` into a C library, built with the host C compiler,',
        "run, and compared with the outputs onnx stores for it. Inputs an op needs at compile",
        "time (shapes, axes, pads, scalars) are frozen into initializers: modelc compiles static",
        "shapes.",
        "",
        "- **passed**: onnx's own check holds (same output count, shapes and dtypes; floats",
        "  within the case's rtol / atol, 1e-3 / 1e-7, NaN equal to NaN; integers and bools",
        "  exactly equal).",
        "- **unsupported**: modelc refused the case cleanly (`UnsupportedOpError`,",
        "  `UnsupportedTypeError`).",
        "- **failed**: wrong numbers, shapes or dtypes (*mismatch*), another modelc error such as",
        "  a C compile error (*error*), any other exception or a dead process (*crash*: a defect),",
        "  or no result within the per-case time limit (*timeout*).",
        "- **out of scope**: unsupported cases that use element types modelc leaves out on purpose",
        "  (float8, float4, int2 / uint2, string, complex, sequences and optionals) and are",
        "  refused with the clean type error; the in-scope rate leaves them out.",
        "",
        "## Totals",
        "",
        *(line + "  " if i == 0 else line for i, line in enumerate(totals_lines(doc))),
        "",
        "Failed, by kind: all cases "
        + ", ".join(f"{k} {t['failed_by_kind'][k]}" for k in KINDS)
        + "; in-scope ops "
        + ", ".join(f"{k} {s['failed_by_kind'][k]}" for k in KINDS)
        + ".",
        "",
        f"{sum(1 for c in doc['cases'].values() if c.get('folded'))} passing cases have no "
        "run-time input once compile-time inputs are frozen (all inputs are scalars, int64 or "
        "not a data operand): the import folds them to a constant, so they check the import and "
        "the op's reference implementation rather than a generated kernel. They are marked "
        '`"folded": true` in docs/conformance.json.',
        "",
        "In-scope ops are the issue's list: "
        + "; ".join(f"{family}: {' '.join(ops)}" for family, ops in _scope_listing().items())
        + ".",
        "",
        "## Per op",
        "",
        "✓: every case passes; (✓): every case passes but those of out-of-scope element types.",
        "Cases of `<op>_expanded` (the op's function body, made of other ops) count under the op",
        "they expand.",
        "",
        "| | op | scope | cases | passed | failed | unsupported | of which out-of-scope types |",
        "|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for op in sorted(doc["ops"], key=_op_sort_key):
        c = doc["ops"][op]
        mark = "✓" if c["passed"] == c["cases"] else ""
        if not mark and c["passed"] and c["passed"] + c["out_of_scope"] == c["cases"]:
            mark = "(✓)"
        unsup = c["unsupported"]
        lines.append(
            f"| {mark} | {op} | {c['scope']} | {c['cases']} | {c['passed'] or ''} | "
            f"{c['failed'] or ''} | {unsup or ''} | {c['out_of_scope'] or ''} |"
        )
    lines += ["", "## Failing cases", ""]
    failing = _by_op(doc, "failed")
    if not failing:
        lines.append("None.")
    for op in sorted(failing, key=_op_sort_key):
        scope = " (in scope)" if op in IN_SCOPE else ""
        lines += [f"### {op}{scope}", ""]
        for name, rec in failing[op]:
            lines.append(f"- `{name}` — {rec.get('kind', '')}: {_md(rec.get('reason', ''))}")
        lines.append("")
    lines += [
        "## Unsupported cases",
        "",
        "The reason modelc gives, per op, with how many cases end in it (node names elided).",
        "",
    ]
    unsupported = _by_op(doc, "unsupported")
    for op in sorted(unsupported, key=_op_sort_key):
        reasons = Counter(_generic(rec.get("reason", "")) for _, rec in unsupported[op])
        lines.append(f"- **{op}**")
        for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  - {n} × {_md(reason)}")
    return "\n".join(lines).rstrip() + "\n"


def _scope_listing() -> dict[str, list[str]]:
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for family, ops in SCOPE.items():
        out[family] = [op for op in ops if op not in seen]
        seen.update(ops)
    return out


def _by_op(doc: Mapping[str, Any], status: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    out: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for name, rec in sorted(doc["cases"].items()):
        if rec["status"] == status:
            out[rec["op"]].append((name, rec))
    return out


def _generic(reason: str) -> str:
    """A reason without what names one case (its node, opset) or repeats on every line (the
    pointer to the docs, the list of supported types), so equal causes group."""
    reason = re.sub(r"^node \S+ \(op [^)]*\): ", "", reason)
    reason = re.sub(r"^node \(op [^)]*\): ", "", reason)
    reason = re.sub(r"^<ModelProto>: ", "", reason)
    for tail in (" (the supported ONNX ops", " (it compiles", "; convert the model"):
        reason = reason.split(tail)[0]
    return reason.rstrip(". ")


def _md(text: str) -> str:
    """Text safe inside a markdown list item or table cell."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
