"""Text form of the IR: the graph printer (level 1) and a readable kernel printer (level 2).

The graph text form is exact: `parse_graph(print_graph(g)) == g` (see `ir/parser.py`, the
grammar's other half). Every detail below serves that round trip or a human reading it:

- value names print bare after `%` when they are identifier-like, else as a JSON string, so any
  name an importer keeps survives;
- floats print with `repr`, the shortest text that reads back to the same double, and always
  with a `.`, an exponent, `inf` or `nan`, so a float attribute never reads back as an int;
- small constants print as value lists (readable in golden tests), large ones as base64 of their
  raw little-endian bytes (fast: one C call each way, no per-element Python loop);
- a graph-valued attribute (the body of a `fused` node) prints as a nested graph in the same
  syntax, indented one level under its node and listed after the node's other attributes, so
  `{kind="elementwise", body=graph @add_relu(...) -> (...) { ... }}` reads top-down.

`constants="elide"` replaces large constants by a digest: that is what `str(graph)` and
`--print-after-all` show, and it does not parse back (the parser says so).

`print_kernel` renders the loop IR as indented pseudo-code for humans; it has no parser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from typing import Literal

import numpy as np

from modelc.ir.attrs import Attrs, AttrValue
from modelc.ir.dtypes import DType
from modelc.ir.graph import Constant, Graph, Node
from modelc.ir.loop import (
    PRECEDENCE,
    Allocate,
    BinOp,
    Call,
    Cast,
    Const,
    Expr,
    For,
    If,
    Kernel,
    Let,
    Load,
    Select,
    Seq,
    Stmt,
    Store,
    UnOp,
    Var,
    add,
)
from modelc.ir.types import NM, BinaryCoded, Dense, QuantParams, TensorType

# Constants with at most this many elements print as a value list (and survive `elide`).
INLINE_MAX_ELEMENTS = 16
# Float widths whose elements print exactly as Python floats (bf16 and fixed<> go to base64).
_LISTABLE_FLOAT_BITS = frozenset({16, 32, 64})
# Words that start a non-node statement: an op named like one is quoted so it stays an op.
KEYWORDS = frozenset({"const", "return"})

ConstantMode = Literal["inline", "elide"]


# ---- names and scalars ---------------------------------------------------------------------------


def is_bare_name(name: str) -> bool:
    """True when `name` matches `[A-Za-z_][A-Za-z0-9_.]*` and can print without quotes."""
    if not name or not (name[0].isascii() and (name[0].isalpha() or name[0] == "_")):
        return False
    return all(ch.isascii() and (ch.isalnum() or ch in "_.") for ch in name)


def format_name(name: str) -> str:
    """A value, graph or attribute name: bare if identifier-like, else a JSON string."""
    return name if is_bare_name(name) else json.dumps(name)


def format_float(x: float) -> str:
    """`repr` of the double: exact on read-back, and never mistaken for an int."""
    return repr(float(x))


def format_attr_value(v: AttrValue, indent: str = "", constants: ConstantMode = "inline") -> str:
    """One attribute value; see the module docstring of `ir/parser.py` for the grammar. A nested
    graph's lines after the first get `indent` (the indentation of the node that holds it)."""
    if isinstance(v, Graph):
        return _graph_text(v, constants, indent)
    if v is None:
        return "none"
    if isinstance(v, bool):  # before int: bool is an int subclass
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, DType):
        return "!" + v.name
    if isinstance(v, tuple):
        return "[" + ", ".join(format_attr_value(x) for x in v) + "]"
    raise TypeError(f"cannot print attribute value {v!r} of type {type(v).__name__}")


def format_attrs(attrs: Attrs, indent: str = "", constants: ConstantMode = "inline") -> str:
    """`{k=v, ...}` in key order, graph-valued attributes last (a nested body reads best after
    the short attributes that describe it), or "" when there are none."""
    if not attrs:
        return ""
    items = sorted(attrs.items(), key=lambda kv: isinstance(kv[1], Graph))  # stable: keys stay
    return (
        "{"
        + ", ".join(f"{format_name(k)}={format_attr_value(v, indent, constants)}" for k, v in items)
        + "}"
    )


# ---- types ---------------------------------------------------------------------------------------


def format_quant(q: QuantParams) -> str:
    scale = ", ".join(format_float(s) for s in q.scale)
    zp = ", ".join(str(int(z)) for z in q.zero_point)
    axis = "none" if q.axis is None else str(int(q.axis))
    sym = ", symmetric" if q.symmetric else ""
    return f"quant<scale=[{scale}], zp=[{zp}], axis={axis}, bits={int(q.bits)}{sym}>"


def format_encoding(e: Dense | NM | BinaryCoded) -> str:
    """ "" for dense storage (the default), else `nm<n,m>` or `binary<bits=B, group=G[, pow2]>`."""
    if isinstance(e, Dense):
        return ""
    if isinstance(e, NM):
        return f"nm<{int(e.n)},{int(e.m)}>"
    if isinstance(e, BinaryCoded):
        pow2 = ", pow2" if e.pow2_terms else ""
        return f"binary<bits={int(e.bits)}, group={int(e.group)}{pow2}>"
    raise TypeError(f"cannot print encoding {e!r}")


def format_type(t: TensorType) -> str:
    """`f32[1,3,224,224]`, `f32[]` for a scalar, plus ` quant<...>` and ` nm<...>` suffixes."""
    out = f"{t.dtype.name}[{','.join(str(d) for d in t.shape)}]"
    if t.quant is not None:
        out += " " + format_quant(t.quant)
    enc = format_encoding(t.encoding)
    if enc:
        out += " " + enc
    return out


# ---- constants -----------------------------------------------------------------------------------


def _listable(dtype: DType) -> bool:
    """Whether elements of `dtype` print exactly as Python scalars."""
    if dtype.kind in ("int", "uint", "bool"):
        return True
    return dtype.kind == "float" and dtype.bits in _LISTABLE_FLOAT_BITS and dtype.int_bits == 0


def little_endian_bytes(arr: np.ndarray) -> bytes:
    """The raw bytes of `arr` in C order and little-endian byte order (the text form's layout)."""
    arr = np.ascontiguousarray(arr)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if sys.byteorder == "big" and arr.dtype.itemsize > 1:
        arr = arr.byteswap()
    return arr.tobytes()


def _format_element(x: object) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        return format_float(x)
    return str(x)


def format_dense(c: Constant, constants: ConstantMode = "inline") -> str:
    """The `dense<...>` payload of one constant."""
    data = c.data
    if data.size <= INLINE_MAX_ELEMENTS and _listable(c.value.type.dtype):
        items = np.asarray(data).reshape(-1).tolist()
        return "dense<[" + ", ".join(_format_element(x) for x in items) + "]>"
    raw = little_endian_bytes(data)
    if constants == "elide" and data.size > INLINE_MAX_ELEMENTS:
        digest = hashlib.sha256(raw).hexdigest()[:12]
        return f"dense<elided sha256={digest} bytes={len(raw)}>"
    return 'dense<base64:"' + base64.b64encode(raw).decode("ascii") + '">'


# ---- graphs --------------------------------------------------------------------------------------


def _value_list(names: tuple[str, ...]) -> str:
    return ", ".join("_" if not n else "%" + format_name(n) for n in names)


def format_node(node: Node, indent: str = "", constants: ConstantMode = "inline") -> str:
    """One node statement, without leading indentation; `indent` is where the statement starts
    (lines of a nested graph attribute are indented relative to it)."""
    op = json.dumps(node.op) if (node.op in KEYWORDS or not is_bare_name(node.op)) else node.op
    head = ""
    if node.outputs:
        names = ", ".join("%" + format_name(o.name) for o in node.outputs)
        types = ", ".join(format_type(o.type) for o in node.outputs)
        head = f"{names}: {types} = "
    line = f"{head}{op}({_value_list(node.inputs)})"
    attrs = format_attrs(node.attrs, indent, constants)
    if attrs:
        line += " " + attrs
    if node.loc:
        line += f" loc({json.dumps(node.loc)})"
    return line


def print_graph(g: Graph, constants: ConstantMode = "inline") -> str:
    """The text form of `g`.

    `constants="inline"` (the default) prints every constant in full and parses back to an equal
    graph; `"elide"` shortens constants of more than 16 elements to a digest, for reading.
    """
    if constants not in ("inline", "elide"):
        raise ValueError(f"constants must be 'inline' or 'elide', not {constants!r}")
    return _graph_text(g, constants, "") + "\n"


def _graph_text(g: Graph, constants: ConstantMode, indent: str) -> str:
    """`g` without a trailing newline; every line after the first starts with `indent` (the
    first is wherever the caller puts it: column 0, or after `body=` in a node)."""
    inner = indent + "  "
    params = ", ".join(f"%{format_name(v.name)}: {format_type(v.type)}" for v in g.inputs)
    lines = [f"graph @{format_name(g.name)}({params}) -> ({_value_list(g.outputs)}) {{"]
    for c in g.constants:
        lines.append(
            f"{inner}const %{format_name(c.name)}: {format_type(c.value.type)} = "
            + format_dense(c, constants)
        )
    lines.extend(inner + format_node(n, inner, constants) for n in g.nodes)
    ret = _value_list(g.outputs)
    lines.append(f"{inner}return {ret}" if ret else f"{inner}return")
    lines.append(indent + "}")
    return "\n".join(lines)


# ---- level 2: kernels (pseudo-code, print only) ---------------------------------------------

_PRECEDENCE = PRECEDENCE  # shared with the C-family renderers
_ATOM = 100


def _default_const_dtype(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    return "i32" if isinstance(v, int) else "f32"


def _expr(e: Expr) -> tuple[str, int]:
    """Text of `e` and its binding strength (for parenthesizing)."""
    if isinstance(e, Const):
        v = e.value
        text = ("true" if v else "false") if isinstance(v, bool) else _format_element(v)
        if e.dtype.name != _default_const_dtype(v):
            return f"{e.dtype.name}({text})", _ATOM
        return text, (_ATOM if not text.startswith("-") else 11)
    if isinstance(e, Var):
        return e.name, _ATOM
    if isinstance(e, Load):
        return f"{e.buffer}[{format_expr(e.index)}]", _ATOM
    if isinstance(e, BinOp):
        if e.op in ("min", "max"):
            return f"{e.op}({format_expr(e.a)}, {format_expr(e.b)})", _ATOM
        p = _PRECEDENCE[e.op]
        a, pa = _expr(e.a)
        b, pb = _expr(e.b)
        a = a if pa >= p else f"({a})"
        b = b if pb > p else f"({b})"  # left-associative: equal strength on the right needs ()
        return f"{a} {e.op} {b}", p
    if isinstance(e, UnOp):
        a, pa = _expr(e.a)
        return e.op + (a if pa >= 11 else f"({a})"), 11
    if isinstance(e, Call):
        return f"{e.fn}({', '.join(format_expr(x) for x in e.args)})", _ATOM
    if isinstance(e, Cast):
        return f"{e.dtype.name}({format_expr(e.a)})", _ATOM
    if isinstance(e, Select):
        args = ", ".join(format_expr(x) for x in (e.cond, e.a, e.b))
        return f"select({args})", _ATOM
    return repr(e), _ATOM


def format_expr(e: Expr) -> str:
    """A loop-IR expression as C-like infix text."""
    return _expr(e)[0]


def _stmt_lines(s: Stmt, depth: int, out: list[str], *, last: bool) -> None:
    """Append the lines of `s`. `last` says `s` ends its block: then a `let`/`allocate` scope
    (which runs to the end of its body) prints flat instead of nesting one level deeper."""
    pad = "  " * depth
    if isinstance(s, Seq):
        for k, x in enumerate(s.stmts):
            _stmt_lines(x, depth, out, last=last and k == len(s.stmts) - 1)
    elif isinstance(s, For):
        kind = "" if s.kind == "serial" else " " + s.kind
        notes = ", ".join(f"{k}={v}" for k, v in s.annotations)
        notes = f" {{{notes}}}" if notes else ""
        end = format_expr(add(s.start, s.extent))
        out.append(f"{pad}for {s.var.name} in [{format_expr(s.start)}, {end}){kind}{notes}:")
        _stmt_lines(s.body, depth + 1, out, last=True)
    elif isinstance(s, Store):
        out.append(f"{pad}{s.buffer}[{format_expr(s.index)}] = {format_expr(s.value)}")
    elif isinstance(s, (Let, Allocate)):
        if isinstance(s, Let):
            head = f"let {s.var.name}: {s.var.dtype.name} = {format_expr(s.value)}"
        else:
            head = f"allocate {s.scope} {s.buffer}: {s.dtype.name}[{s.size}]"
        if last:
            out.append(pad + head)
            _stmt_lines(s.body, depth, out, last=True)
        else:
            out.append(f"{pad}{head} in:")
            _stmt_lines(s.body, depth + 1, out, last=True)
    elif isinstance(s, If):
        out.append(f"{pad}if {format_expr(s.cond)}:")
        _stmt_lines(s.then, depth + 1, out, last=True)
        if s.else_ is not None:
            out.append(f"{pad}else:")
            _stmt_lines(s.else_, depth + 1, out, last=True)
    else:
        out.append(f"{pad}{s!r}")


def print_kernel(k: Kernel) -> str:
    """A kernel as indented pseudo-code, one statement per line (for humans and diffs)."""
    params = ", ".join(
        f"{'out ' if p.is_output else ''}{p.name}: {p.dtype.name}[{p.size}]" for p in k.params
    )
    lines = [f"kernel {k.name}({params}):"]
    if k.info:
        lines.append("  // " + ", ".join(f"{key}={val}" for key, val in k.info))
    _stmt_lines(k.body, 1, lines, last=True)
    return "\n".join(lines) + "\n"
