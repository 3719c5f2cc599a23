"""Parser of the graph text form (the inverse of `ir/printer.py`).

A hand-written tokenizer and recursive-descent parser, so that errors say exactly where and what
was expected (`line 3:17: expected ')' after the inputs of conv, got '{'`). Grammar:

    file      := graph
    graph     := 'graph' '@' NAME '(' [param {',' param}] ')' '->' '(' [ref {',' ref}] ')'
                 '{' {const | node} 'return' [ref {',' ref}] '}'
    param     := '%' NAME ':' type
    const     := 'const' '%' NAME ':' type '=' dense
    node      := ['%' NAME {',' '%' NAME} ':' type {',' type} '='] OP '(' [arg {',' arg}] ')'
                 [attrs] ['loc' '(' STRING ')']
    arg       := '%' NAME | '_'                      (`_`: an absent optional input)
    type      := dtype '[' [INT {',' INT}] ']' [quant] [encoding]
    dtype     := IDENT | 'fixed' '<' INT ',' INT '>'
    quant     := 'quant' '<' 'scale' '=' list ',' 'zp' '=' list ',' 'axis' '=' (INT | 'none')
                 ',' 'bits' '=' INT [',' 'symmetric'] '>'
    encoding  := 'nm' '<' INT ',' INT '>' | 'binary' '<' 'bits' '=' INT ',' 'group' '=' INT
                 [',' 'pow2'] '>'
    attrs     := '{' [NAME '=' value {',' NAME '=' value}] '}'
    value     := INT | FLOAT | STRING | 'true' | 'false' | 'none' | '!' dtype
                 | '[' [value {',' value}] ']' | graph
    dense     := 'dense' '<' ('[' [scalar {',' scalar}] ']' | 'base64' ':' STRING) '>'

NAME is an identifier `[A-Za-z_][A-Za-z0-9_.]*` or a JSON string; FLOAT is anything with a `.`
or an exponent, or `inf`, `-inf`, `nan`. `//` starts a comment to the end of the line. A graph
as an attribute value (the body of a `fused` node) is a scope of its own: its value names may
repeat names of the enclosing graph.

The parser re-infers nothing: nodes are built with exactly the types written, so a golden file
shows what a pass produced, and `ir/verify.py` is what checks it.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from json.decoder import scanstring
from typing import TypeVar

import numpy as np

from modelc.errors import ParseError, UnsupportedTypeError
from modelc.ir.attrs import Attrs, AttrValue
from modelc.ir.dtypes import DType, fixed, parse_dtype
from modelc.ir.graph import Constant, Graph, Node, Value, make_constant
from modelc.ir.types import NM, BinaryCoded, Dense, QuantParams, TensorType

T = TypeVar("T")

# Token kinds.
IDENT = "identifier"
NUMBER = "number"
STRING = "string"
PUNCT = "punctuation"
EOF = "end of input"

_PUNCTUATION = frozenset("()[]{}<>,:=!%@_")
_IDENT_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789.")
_NUMBER_CHARS = frozenset("0123456789.eE+-")
_DIGITS = frozenset("0123456789")
_DIGITS_DOT = _DIGITS | {"."}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str  # the source text; for STRING the decoded value
    pos: int  # offset in the source


def _describe(tok: Token) -> str:
    if tok.kind == EOF:
        return "end of input"
    if tok.kind == STRING:
        shown = tok.text if len(tok.text) <= 40 else tok.text[:37] + "..."
        return f"string {json.dumps(shown)}"
    return repr(tok.text)


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _error(text: str, pos: int, message: str) -> ParseError:
    line, col = _line_col(text, pos)
    return ParseError(f"line {line}:{col}: {message}")


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens. Strings go through json's C scanner: base64 constants of
    hundreds of megabytes are one token, scanned in one call."""
    toks: list[Token] = []
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch == '"':
            try:
                value, end = scanstring(text, i + 1, True)
            except json.JSONDecodeError as e:
                raise _error(text, e.pos, f"bad string literal: {e.msg}") from None
            toks.append(Token(STRING, value, i))
            i = end
        elif ch in _IDENT_START and not (ch == "_" and _is_lone_underscore(text, i)):
            j = i + 1
            while j < n and text[j] in _IDENT_CHARS:
                j += 1
            toks.append(Token(IDENT, text[i:j], i))
            i = j
        elif ch in _DIGITS or (ch == "-" and i + 1 < n and text[i + 1] in _DIGITS_DOT):
            j = i + 1
            while (
                j < n
                and text[j] in _NUMBER_CHARS
                and not (text[j] in "+-" and text[j - 1] not in "eE")
            ):
                j += 1
            toks.append(Token(NUMBER, text[i:j], i))
            i = j
        elif ch == "-" and text.startswith("-inf", i):
            toks.append(Token(NUMBER, "-inf", i))
            i += 4
        elif ch == "-" and text.startswith("->", i):
            toks.append(Token(PUNCT, "->", i))
            i += 2
        elif ch in _PUNCTUATION:
            toks.append(Token(PUNCT, ch, i))
            i += 1
        else:
            raise _error(text, i, f"unexpected character {ch!r}")
    toks.append(Token(EOF, "", n))
    return toks


def _is_lone_underscore(text: str, i: int) -> bool:
    """`_` alone is the absent-input marker; `_x` is an identifier."""
    return i + 1 >= len(text) or text[i + 1] not in _IDENT_CHARS


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # ---- token helpers -------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        return _error(self.text, (tok or self.tok).pos, message)

    def expected(self, what: str) -> ParseError:
        return self.error(f"expected {what}, got {_describe(self.tok)}")

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.kind != EOF:
            self.i += 1
        return t

    def at(self, text: str) -> bool:
        t = self.tok
        return t.kind in (PUNCT, IDENT) and t.text == text

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str, context: str = "") -> Token:
        if not self.at(text):
            raise self.expected(f"{text!r}" + (f" {context}" if context else ""))
        return self.next()

    def name(self, what: str) -> str:
        """A bare identifier or a JSON string (`_` alone is a name here: it only means "absent"
        where an input is expected)."""
        if self.tok.kind in (IDENT, STRING) or self.at("_"):
            return self.next().text
        raise self.expected(what)

    def value_ref(self, what: str = "a value name like %x") -> str:
        self.expect("%", f"(starting {what})")
        return self.name(what)

    def integer(self, what: str) -> int:
        t = self.tok
        if t.kind == NUMBER and _is_int_text(t.text):
            self.next()
            return int(t.text)
        raise self.expected(what)

    def comma_list(self, item: Callable[[], T], close: str) -> list[T]:
        """`item {',' item}` up to (not including) `close`; empty when `close` comes first."""
        items: list[T] = []
        if self.at(close):
            return items
        items.append(item())
        while self.accept(","):
            items.append(item())
        return items

    # ---- graph ---------------------------------------------------------------------------------

    def graph(self) -> Graph:
        g = self.graph_def()
        if self.tok.kind != EOF:
            raise self.expected("end of input after the graph")
        return g

    def graph_def(self) -> Graph:
        """One `graph @name(...) -> (...) { ... }`: the whole file, or a nested attribute."""
        self.expect("graph", "at the start of the graph")
        self.expect("@", "before the graph name")
        name = self.name("the graph name")
        self.expect("(", "before the graph inputs")
        inputs = self.comma_list(self.param, ")")
        self.expect(")", "after the graph inputs")
        self.expect("->", "before the graph outputs")
        self.expect("(", "before the graph outputs")
        header_outputs = self.comma_list(lambda: self.value_ref("a graph output name"), ")")
        self.expect(")", "after the graph outputs")
        self.expect("{", "to open the graph body")
        constants: list[Constant] = []
        nodes: list[Node] = []
        while not self.at("return"):
            if self.tok.kind == EOF or self.at("}"):
                raise self.expected("'return' before the end of the graph body")
            if self.at("const"):
                constants.append(self.constant())
            else:
                nodes.append(self.node())
        ret = self.next()
        outputs = self.comma_list(lambda: self.value_ref("a returned value"), "}")
        if outputs != header_outputs:
            raise self.error(
                f"'return' lists {outputs} but the graph header says -> {header_outputs}", ret
            )
        self.expect("}", "to close the graph body")
        return Graph(name, tuple(inputs), tuple(outputs), tuple(nodes), tuple(constants))

    def param(self) -> Value:
        name = self.value_ref("a graph input")
        self.expect(":", f"after input %{name}")
        return Value(name, self.type())

    def constant(self) -> Constant:
        self.expect("const")
        name = self.value_ref("the constant's name")
        self.expect(":", f"after constant %{name}")
        t = self.type()
        self.expect("=", f"after the type of constant %{name}")
        return make_constant(name, self.dense(t, name), t)

    def node(self) -> Node:
        start = self.tok
        names: list[str] = []
        types: list[TensorType] = []
        if self.at("%"):
            names = self.comma_list(lambda: self.value_ref("an output name"), ":")
            self.expect(":", "after the output names")
            types = [self.type()]
            while self.accept(","):
                types.append(self.type())
            if len(types) != len(names):
                raise self.error(f"{len(names)} output names but {len(types)} output types", start)
            self.expect("=", "after the output types")
        elif self.tok.kind not in (IDENT, STRING) and not self.at("_"):
            raise self.expected("a node (%out: type = op(...)), 'const' or 'return'")
        op = self.name("an op name")
        self.expect("(", f"after op name {op!r}")
        inputs = self.comma_list(self.argument, ")")
        self.expect(")", f"after the inputs of {op}")
        attrs = self.attrs() if self.at("{") else Attrs()
        loc = ""
        if self.accept("loc"):
            self.expect("(", "after 'loc'")
            if self.tok.kind != STRING:
                raise self.expected("a string in loc(...)")
            loc = self.next().text
            self.expect(")", "after the loc string")
        outs = tuple(Value(n, t) for n, t in zip(names, types))
        return Node(op, tuple(inputs), outs, attrs, loc)

    def argument(self) -> str:
        if self.accept("_"):
            return ""
        return self.value_ref("an input (%name, or _ for an absent one)")

    # ---- attributes ----------------------------------------------------------------------------

    def attrs(self) -> Attrs:
        self.expect("{")
        items: dict[str, AttrValue] = {}

        def item() -> None:
            t = self.tok
            key = self.name("an attribute name")
            if key in items:
                raise self.error(f"attribute {key!r} given twice", t)
            self.expect("=", f"after attribute name {key!r}")
            items[key] = self.attr_value()

        self.comma_list(item, "}")
        self.expect("}", "to close the attributes")
        return Attrs(items)

    def attr_value(self) -> AttrValue:
        t = self.tok
        if t.kind == NUMBER or (t.kind == IDENT and t.text in ("inf", "nan")):
            return self.number()
        if t.kind == STRING:
            return self.next().text
        if self.accept("true"):
            return True
        if self.accept("false"):
            return False
        if self.accept("none"):
            return None
        if self.accept("!"):
            return self.dtype()
        if self.accept("["):
            items = self.comma_list(self.attr_value, "]")
            self.expect("]", "to close the list")
            return tuple(items)
        if self.at("graph"):
            return self.graph_def()
        raise self.expected(
            "an attribute value (number, string, true/false, none, !dtype, [...], graph @...)"
        )

    def number(self) -> int | float:
        """INT or FLOAT; ints are written without `.`/exponent, floats always with one."""
        t = self.next()
        if t.kind == IDENT and t.text in ("inf", "nan"):
            return float(t.text)
        if t.kind != NUMBER:
            raise self.error(f"expected a number, got {_describe(t)}", t)
        try:
            return int(t.text) if _is_int_text(t.text) else float(t.text)
        except ValueError:
            raise self.error(f"malformed number {t.text!r}", t) from None

    # ---- types ---------------------------------------------------------------------------------

    def dtype(self) -> DType:
        t = self.tok
        if t.kind != IDENT:
            raise self.expected("an element type (f32, i8, bool, fixed<16,6>, ...)")
        self.next()
        if t.text == "fixed":
            self.expect("<", "after 'fixed'")
            width = self.integer("the fixed-point width")
            self.expect(",", "in fixed<W,I>")
            int_bits = self.integer("the fixed-point integer bits")
            self.expect(">", "to close fixed<W,I>")
            return fixed(width, int_bits)
        try:
            return parse_dtype(t.text)
        except UnsupportedTypeError:
            raise self.error(f"unknown element type {t.text!r}", t) from None

    def type(self) -> TensorType:
        dtype = self.dtype()
        self.expect("[", "before the shape (write f32[] for a scalar)")
        shape = self.comma_list(lambda: self.integer("a dimension (non-negative integer)"), "]")
        self.expect("]", "to close the shape")
        if any(d < 0 for d in shape):
            raise self.error(f"negative dimension in shape {shape}")
        quant = self.quant() if self.at("quant") else None
        encoding: Dense | NM | BinaryCoded = Dense()
        if self.at("nm") or self.at("binary"):
            encoding = self.encoding()
        return TensorType(tuple(shape), dtype, quant, encoding)

    def key(self, key: str, where: str) -> None:
        """`key =` inside `where<...>`."""
        self.expect(key, f"in {where}<...>")
        self.expect("=", f"after {key!r}")

    def bracketed(self, item: Callable[[], T], what: str) -> list[T]:
        self.expect("[", f"before the {what}")
        items = self.comma_list(item, "]")
        self.expect("]", f"after the {what}")
        return items

    def flag(self, word: str, after: str) -> bool:
        """An optional trailing `, word` (present only when true)."""
        if self.accept(","):
            self.expect(word, f"or '>' after {after}")
            return True
        return False

    def quant(self) -> QuantParams:
        start = self.expect("quant")
        self.expect("<", "after 'quant'")
        self.key("scale", "quant")
        scale = self.bracketed(lambda: float(self.number()), "scales")
        self.expect(",", "after the scales")
        self.key("zp", "quant")
        zp = self.bracketed(lambda: self.integer("an integer zero point"), "zero points")
        self.expect(",", "after the zero points")
        self.key("axis", "quant")
        axis = None if self.accept("none") else self.integer("an axis or none")
        self.expect(",", "after the axis")
        self.key("bits", "quant")
        bits = self.integer("the number of bits")
        symmetric = self.flag("symmetric", "bits")
        self.expect(">", "to close quant<...>")
        try:
            return QuantParams(tuple(scale), tuple(zp), axis, bits, symmetric)
        except ValueError as e:
            raise self.error(str(e), start) from None

    def encoding(self) -> NM | BinaryCoded:
        if self.accept("nm"):
            self.expect("<", "after 'nm'")
            n = self.integer("N of nm<N,M>")
            self.expect(",", "in nm<N,M>")
            m = self.integer("M of nm<N,M>")
            self.expect(">", "to close nm<N,M>")
            return NM(n, m)
        self.expect("binary")
        self.expect("<", "after 'binary'")
        self.key("bits", "binary")
        bits = self.integer("the number of binary planes")
        self.expect(",", "after bits")
        self.key("group", "binary")
        group = self.integer("the group size")
        pow2 = self.flag("pow2", "group")
        self.expect(">", "to close binary<...>")
        return BinaryCoded(bits, group, pow2)

    # ---- constants -----------------------------------------------------------------------------

    def dense(self, t: TensorType, name: str) -> np.ndarray:
        start = self.expect("dense", f"(the value of constant %{name})")
        self.expect("<", "after 'dense'")
        try:
            npdt = t.dtype.numpy
        except UnsupportedTypeError as e:
            raise self.error(f"constant %{name}: {e}", start) from None
        if self.accept("elided"):
            raise self.error(
                f"constant %{name} was elided (printed with constants='elide'); "
                "print the graph with constants='inline' to get text that parses",
                start,
            )
        if self.accept("["):
            items_at = self.tok
            values = self.comma_list(lambda: self.element(t.dtype, name), "]")
            self.expect("]", "to close the constant's values")
            if len(values) != t.size:
                raise self.error(
                    f"constant %{name} has type {t.dtype.name}{list(t.shape)} "
                    f"({t.size} elements) but {len(values)} values are listed",
                    items_at,
                )
            arr = np.array(values, dtype=npdt).reshape(t.shape)
            arr.flags.writeable = False
        else:
            self.expect("base64", "or '[' in dense<...>")
            self.expect(":", "after 'base64'")
            if self.tok.kind != STRING:
                raise self.expected("a base64 string")
            s = self.next()
            arr = self.bytes_array(s, t, npdt, name)
        self.expect(">", "to close dense<...>")
        return arr

    def element(self, dt: DType, name: str) -> int | float | bool:
        """One listed constant value, checked against the element type (no silent wrap-around
        or truncation: an int dtype takes ints in range, bool takes true/false)."""
        at = self.tok
        if self.accept("true") or self.accept("false"):
            v: int | float | bool = at.text == "true"
        else:
            v = self.number()
        if dt.kind == "bool":
            ok = isinstance(v, bool)
        elif dt.is_int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not ok:
            raise self.error(f"constant %{name}: value {at.text} does not fit {dt.name}", at)
        if dt.is_int and not dt.min <= v <= dt.max:
            raise self.error(f"constant %{name}: value {v} is out of range of {dt.name}", at)
        return v

    def bytes_array(self, s: Token, t: TensorType, npdt: np.dtype, name: str) -> np.ndarray:
        try:
            raw = base64.b64decode(s.text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise self.error(f"constant %{name}: bad base64 data: {e}", s) from None
        expected = t.size * npdt.itemsize
        if len(raw) != expected:
            raise self.error(
                f"constant %{name}: {len(raw)} bytes of data, but {t.dtype.name}"
                f"{list(t.shape)} stored as {npdt} takes {expected}",
                s,
            )
        arr = np.frombuffer(raw, dtype=npdt)  # read-only: it views the immutable bytes
        if sys.byteorder == "big" and npdt.itemsize > 1:
            arr = arr.byteswap()
            arr.flags.writeable = False
        return arr.reshape(t.shape)


def _is_int_text(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isdigit()


def parse_graph(text: str) -> Graph:
    """Parse the text form of a graph (see the module docstring for the grammar)."""
    return _Parser(text).graph()


def parse_type(text: str) -> TensorType:
    """Parse one tensor type, e.g. `i8[1,64] quant<scale=[0.02], zp=[0], axis=none, bits=8>`."""
    p = _Parser(text)
    t = p.type()
    if p.tok.kind != EOF:
        raise p.expected("end of the type")
    return t
