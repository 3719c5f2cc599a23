"""Einsum, lowered at import into transpose / reshape / matmul / mul / reduce_sum.

The equation is parsed into one label list per operand ("..." expands to labels of its own, right
aligned across operands, so ellipsis dims broadcast as numpy's do), then contracted pairwise, left
to right. For each pair, a label is

- summed out first (`reduce_sum`) when neither the other operand, a later operand nor the output
  has it;
- a batch label when both have it and it is still needed: the batch dims of a `matmul` (which
  broadcasts them);
- contracted when both have it and nothing later needs it: the K of the matmul;
- a row (column) label when only the first (second) operand has it.

Each operand is transposed to (batch, rows, contracted) / (batch, contracted, columns), the
groups flattened by a reshape, multiplied, and reshaped back. Without contracted labels the pair
is a broadcasting `mul` instead (outer and elementwise products). The result is transposed into
the output's label order. Transposes and reshapes that change nothing are not emitted, so
"bij,bjk->bik" is one matmul and "bhqd,bhkd->bhqk" a transpose plus a matmul.

A label repeated within one operand ("ii->i", a trace "ii->") first takes that operand's diagonal
(a constant-index `gather` over the two dims merged). Equations that do not parse, or sizes that
do not agree, are errors naming the equation.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence

import numpy as np

from modelc.frontend.onnx_ops.node import OnnxNode
from modelc.frontend.onnx_ops.registry import converter

Labels = list[str]
ELLIPSIS_LABELS = string.digits  # letters are the user's labels; these never clash


def _parse(n: OnnxNode, equation: str, ranks: Sequence[int]) -> tuple[list[Labels], Labels]:
    """Label lists of the inputs and of the output, with "..." expanded."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise n.shape_error(
            f"equation {equation!r} has {len(terms)} operand terms for {len(ranks)} inputs"
        )
    ell_rank = 0
    for term, rank in zip(terms, ranks):
        named = len(term.replace("...", ""))
        if "..." in term:
            ell_rank = max(ell_rank, rank - named)
        elif named != rank:
            raise n.shape_error(
                f"term {term!r} of {equation!r} names {named} dims of a rank-{rank} input"
            )
    if ell_rank > len(ELLIPSIS_LABELS):
        raise n.unsupported(f"equation {equation!r}: '...' stands for too many dims")
    ell = list(ELLIPSIS_LABELS[:ell_rank])

    def expand(term: str, rank: int | None) -> Labels:
        head, dots, tail = term.partition("...")
        if any(not c.isalpha() for c in head + tail) or "..." in tail:
            raise n.shape_error(f"equation {equation!r}: bad term {term!r}")
        if not dots:
            return list(term)
        k = ell_rank if rank is None else rank - len(head) - len(tail)
        return list(head) + ell[ell_rank - k :] + list(tail)

    inputs = [expand(t, r) for t, r in zip(terms, ranks)]
    if arrow:
        output = expand(rhs, None)
    else:  # implicit output: ellipsis dims, then the labels used once, alphabetically
        flat = [c for labels in inputs for c in labels if c.isalpha()]
        output = ell + sorted(c for c in set(flat) if flat.count(c) == 1)
    if len(set(output)) != len(output):
        raise n.shape_error(f"equation {equation!r}: the output repeats a label")
    known = {c for labels in inputs for c in labels}
    missing = [c for c in output if c not in known]
    if missing:
        raise n.shape_error(f"equation {equation!r}: output labels {missing} are in no input")
    return inputs, output


class _Einsum:
    """The pairwise contraction of one Einsum node."""

    def __init__(self, n: OnnxNode, equation: str) -> None:
        self.n = n
        self.equation = equation
        self.sizes: dict[str, int] = {}

    def size_of(self, value: str, labels: Labels) -> None:
        for c, d in zip(labels, self.n.b.types[value].shape):
            known = self.sizes.get(c)
            if known is None or known == 1:
                self.sizes[c] = d
            elif d not in (1, known):
                raise self.n.shape_error(
                    f"equation {self.equation!r}: label {c!r} is {known} in one operand, {d} in "
                    "another"
                )

    def diagonal(self, value: str, labels: Labels) -> tuple[str, Labels]:
        """Take the diagonal of every label an operand repeats ("ii->i", "...ii->...i"): move the
        two dims last, merge them, and gather the indices i * (n + 1)."""
        while len(set(labels)) != len(labels):
            c = next(c for c in labels if labels.count(c) > 1)
            p = labels.index(c)
            q = labels.index(c, p + 1)
            shape = self.n.b.types[value].shape
            if shape[p] != shape[q]:
                raise self.n.shape_error(
                    f"equation {self.equation!r}: label {c!r} repeats over dims of sizes "
                    f"{shape[p]} and {shape[q]}"
                )
            rest = [i for i in range(len(labels)) if i not in (p, q)]
            y = self.n.transpose(value, rest + [p, q])
            d = shape[p]
            y = self.n.reshape(y, [shape[i] for i in rest] + [d * d])
            picks = self.n.constant(np.arange(d, dtype=np.int64) * (d + 1))
            value = self.n.op("gather", y, picks, axis=len(rest))
            labels = [labels[i] for i in rest] + [c]
        return value, labels

    def sum_out(self, value: str, labels: Labels, keep: set[str]) -> tuple[str, Labels]:
        axes = [i for i, c in enumerate(labels) if c not in keep]
        if not axes:
            return value, labels
        y = self.n.op("reduce_sum", value, axes=axes, keepdims=False)
        return y, [c for c in labels if c in keep]

    def arrange(self, value: str, labels: Labels, order: Labels) -> str:
        """Transpose `value` into `order` (a permutation of `labels`)."""
        return self.n.transpose(value, [labels.index(c) for c in order])

    def pair(
        self, a: tuple[str, Labels], b: tuple[str, Labels], keep: set[str]
    ) -> tuple[str, Labels]:
        (va, la), (vb, lb) = a, b
        va, la = self.sum_out(va, la, keep | set(lb))
        vb, lb = self.sum_out(vb, lb, keep | set(la))
        batch = [c for c in la if c in lb and c in keep]
        contracted = [c for c in la if c in lb and c not in keep]
        rows = [c for c in la if c not in lb]
        cols = [c for c in lb if c not in la]
        shape_a = dict(zip(la, self.n.b.types[va].shape))
        shape_b = dict(zip(lb, self.n.b.types[vb].shape))
        if not contracted:
            # A broadcasting product: both in (batch, rows, cols) order, with size-1 dims for
            # the labels an operand lacks.
            order = batch + rows + cols
            ya = self.arrange(va, la, [c for c in order if c in la])
            yb = self.arrange(vb, lb, [c for c in order if c in lb])
            ya = self.n.reshape(ya, [shape_a.get(c, 1) for c in order])
            yb = self.n.reshape(yb, [shape_b.get(c, 1) for c in order])
            return self.n.op("mul", ya, yb), order
        for c in contracted:
            if shape_a[c] != shape_b[c]:
                raise self.n.unsupported(
                    f"equation {self.equation!r}: label {c!r} is summed over while one operand "
                    f"broadcasts it ({shape_a[c]} vs {shape_b[c]})"
                )
        k = math.prod(shape_a[c] for c in contracted)
        m = math.prod(shape_a[c] for c in rows)
        nn = math.prod(shape_b[c] for c in cols)
        ya = self.arrange(va, la, batch + rows + contracted)
        yb = self.arrange(vb, lb, batch + contracted + cols)
        ya = self.n.reshape(ya, [shape_a[c] for c in batch] + [m, k])
        yb = self.n.reshape(yb, [shape_b[c] for c in batch] + [k, nn])
        y = self.n.op("matmul", ya, yb)
        out_batch = [max(shape_a[c], shape_b[c]) for c in batch]
        shape = out_batch + [shape_a[c] for c in rows] + [shape_b[c] for c in cols]
        return self.n.reshape(y, shape), batch + rows + cols

    def run(self, inputs: list[Labels], output: Labels) -> str:
        operands = [self.diagonal(self.n.input(i), labels) for i, labels in enumerate(inputs)]
        for v, labels in operands:
            self.size_of(v, labels)
        if len(operands) == 1:
            v, labels = self.sum_out(*operands[0], set(output))
        else:
            while len(operands) > 1:
                later = {c for _, labels in operands[2:] for c in labels}
                merged = self.pair(operands[0], operands[1], set(output) | later)
                operands = [merged, *operands[2:]]
            v, labels = operands[0]
            v, labels = self.sum_out(v, labels, set(output))
        return self.arrange(v, labels, output)


@converter("Einsum", since=12)
def einsum(n: OnnxNode) -> list[str]:
    equation = n.attr("equation")
    if not isinstance(equation, str) or not equation:
        raise n.unsupported("the required attribute 'equation' is missing")
    if not n.inputs:
        raise n.shape_error("takes at least one input")
    ranks = [n.rank(i) for i in range(len(n.inputs))]
    inputs, output = _parse(n, equation, ranks)
    return [_Einsum(n, equation).run(inputs, output)]
