"""The C-family renderer: loop-IR kernels -> C-like source text.

A dialect (C for cpu/mcu, CUDA, HLS C++) is data: a type map, intrinsic tables per dtype, loop
pragma templates and declared capabilities. The base class walks the IR once; dialects change
tables, not control flow. Passes read `capabilities` to decide what to emit (vector width, fp16,
dot-product instructions, a hardware multiplier), so there are no `if target == ...` chains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from modelc.errors import UnsupportedTypeError
from modelc.ir import loop as L
from modelc.ir.dtypes import DType


@dataclass(frozen=True)
class Capabilities:
    vector_bits: int = 256
    has_fp16: bool = False
    has_dot_product: bool = False
    has_hw_multiplier: bool = True
    has_openmp: bool = True


@dataclass(frozen=True)
class Emulated:
    """An element type the dialect stores in one C type and computes in another (bf16: the 16
    bits in a uint16_t, arithmetic in float). Templates take the C expression as "{0}"."""

    compute: str  # C type of values in registers (Let, casts, register scalars)
    load: str  # storage -> compute
    store: str  # compute -> storage (rounding)
    round: str  # compute -> compute, rounded to the type's precision (a cast into the type)


@dataclass(frozen=True)
class Dialect:
    name: str
    types: Mapping[str, str]  # dtype name -> C type
    # intrinsic name -> template per float width; "{0}" is the first argument.
    float_intrinsics: Mapping[str, Mapping[int, str]]
    int_intrinsics: Mapping[str, str]
    loop_pragmas: Mapping[str, str]  # loop kind -> pragma line ("" for none)
    kernel_prefix: str = "static void"
    restrict: str = "restrict"
    capabilities: Capabilities = field(default_factory=Capabilities)
    # Below this much work a parallel loop is emitted without its pragma (fork cost > gain).
    parallel_min_work: int = 1 << 15
    # dtype name -> how an element type without native arithmetic is stored and computed.
    emulated: Mapping[str, Emulated] = field(default_factory=dict)


_F = {32: "f", 64: "", 16: "f"}  # libm suffix per float width (f16 computes through float)


def _libm(name: str) -> dict[int, str]:
    return {bits: f"{name}{suffix}({{0}})" for bits, suffix in _F.items()}


FLOAT_INTRINSICS: dict[str, dict[int, str]] = {
    **{n: _libm(n) for n in ("exp", "log", "sqrt", "tanh", "erf", "floor", "ceil", "sin", "cos")},
    "abs": _libm("fabs"),
    "round": _libm("nearbyint"),  # default rounding mode: half to even, like onnx Round
    "rsqrt": {32: "(1.0f / sqrtf({0}))", 64: "(1.0 / sqrt({0}))", 16: "(1.0f / sqrtf({0}))"},
    "pow": {32: "powf({0}, {1})", 64: "pow({0}, {1})", 16: "powf({0}, {1})"},
    "fmod": {32: "fmodf({0}, {1})", 64: "fmod({0}, {1})", 16: "fmodf({0}, {1})"},
    "sigmoid": {
        32: "(1.0f / (1.0f + expf(-({0}))))",
        64: "(1.0 / (1.0 + exp(-({0}))))",
        16: "(1.0f / (1.0f + expf(-({0}))))",
    },
}

INT_INTRINSICS: dict[str, str] = {
    "abs": "(({0}) < 0 ? -({0}) : ({0}))",
    "pow": "modelc_ipow({0}, {1})",
}

C_TYPES: dict[str, str] = {
    "f64": "double",
    "f32": "float",
    "f16": "_Float16",
    "i64": "int64_t",
    "i32": "int32_t",
    "i16": "int16_t",
    "i8": "int8_t",
    "i4": "int8_t",
    "u64": "uint64_t",
    "u32": "uint32_t",
    "u16": "uint16_t",
    "u8": "uint8_t",
    "u4": "uint8_t",
    "bf16": "uint16_t",  # storage; arithmetic is emulated in float (see BF16)
    "bool": "bool",
}

# bf16 as the C prelude implements it: the upper 16 bits of a float, stored round-to-nearest-even.
BF16 = Emulated(
    compute="float",
    load="modelc_bf16_to_f32({0})",
    store="modelc_f32_to_bf16({0})",
    round="modelc_bf16_round({0})",
)

_PREC = L.PRECEDENCE


class CFamilyRenderer:
    """Renders kernels of the loop IR as C-family functions."""

    def __init__(self, dialect: Dialect) -> None:
        self.d = dialect

    # ---- types and literals ----------------------------------------------------------------------

    def ctype(self, dt: DType) -> str:
        """The C type of a buffer element of `dt` (pointers, arrays)."""
        try:
            return self.d.types[dt.name]
        except KeyError:
            raise UnsupportedTypeError(
                f"the {self.d.name} renderer has no type for {dt.name}"
            ) from None

    def value_ctype(self, dt: DType) -> str:
        """The C type of a value of `dt` in registers: the storage type unless emulated."""
        emu = self.d.emulated.get(dt.name)
        return emu.compute if emu else self.ctype(dt)

    def _emulated_buffer(self, buffer: str) -> Emulated | None:
        """How loads and stores of `buffer` convert (None: they do not). Register scalars hold
        the compute type, so only memory buffers convert."""
        if buffer in self._scalars:
            return None
        dt = self._buffers.get(buffer)
        return None if dt is None else self.d.emulated.get(dt.name)

    def literal(self, c: L.Const) -> str:
        v, dt = c.value, c.dtype
        if dt.kind == "bool":
            return "1" if v else "0"
        if dt.is_float:
            f = float(v)
            if math.isnan(f):
                return "NAN"
            if math.isinf(f):
                return "INFINITY" if f > 0 else "-INFINITY"
            if dt.bits == 64:
                return repr(f)
            text = repr(float(np.float32(f)))
            return f"{text}f" if ("." in text or "e" in text) else f"{text}.0f"
        iv = int(v)
        if dt.bits == 64:
            return f"{iv}LL" if dt.kind == "int" else f"{iv}ULL"
        if dt.kind == "uint":
            return f"{iv}u"
        if iv == -(1 << 31):
            return "(-2147483647 - 1)"
        return str(iv)

    # ---- expressions --------------------------------------------------------------------------

    def expr(self, e: L.Expr, prec: int = 0) -> str:
        if isinstance(e, L.Const):
            s = self.literal(e)
            return f"({s})" if s.startswith("-") and prec > 0 else s
        if isinstance(e, L.Var):
            return e.name
        if isinstance(e, L.Load):
            return self.load(e)
        if isinstance(e, L.BinOp):
            return self.binop(e, prec)
        if isinstance(e, L.UnOp):
            return f"{e.op}{self.expr(e.a, 11)}"
        if isinstance(e, L.Cast):
            text = f"(({self.value_ctype(e.dtype)}){self.expr(e.a, 11)})"
            emu = self.d.emulated.get(e.dtype.name)
            return emu.round.format(text) if emu and e.a.dtype != e.dtype else text
        if isinstance(e, L.Select):
            s = f"{self.expr(e.cond, 1)} ? {self.expr(e.a, 1)} : {self.expr(e.b, 1)}"
            return f"({s})"
        if isinstance(e, L.Call):
            return self.call(e)
        raise TypeError(f"cannot render expression {e!r}")

    def load(self, e: L.Load) -> str:
        if e.buffer in self._scalars:
            return e.buffer
        text = f"{e.buffer}[{self.expr(e.index)}]"
        emu = self._emulated_buffer(e.buffer)
        return emu.load.format(text) if emu else text

    def binop(self, e: L.BinOp, prec: int) -> str:
        if e.op in ("min", "max"):
            a, b = self.expr(e.a, 7), self.expr(e.b, 7)
            cmp = "<" if e.op == "min" else ">"
            return f"({a} {cmp} {b} ? {a} : {b})"
        p = _PREC[e.op]
        # left-assoc: the right operand of - / % needs parens at equal precedence
        s = f"{self.expr(e.a, p)} {e.op} {self.expr(e.b, p + 1)}"
        return f"({s})" if p < prec else s

    def call(self, e: L.Call) -> str:
        args = [self.expr(a) for a in e.args]
        dt = e.args[0].dtype if e.args else e.dtype
        if dt.is_float:
            table = self.d.float_intrinsics.get(e.fn)
            tmpl = table.get(dt.bits) if table else None
        else:
            tmpl = self.d.int_intrinsics.get(e.fn)
        if tmpl is None:
            raise UnsupportedTypeError(
                f"the {self.d.name} renderer has no intrinsic {e.fn} for {dt.name}"
            )
        return tmpl.format(*args)

    # ---- statements ---------------------------------------------------------------------------

    def stmt(self, s: L.Stmt, ind: int, out: list[str]) -> None:
        pad = "  " * ind
        if isinstance(s, L.Seq):
            for x in s.stmts:
                self.stmt(x, ind, out)
        elif isinstance(s, L.For):
            self.for_loop(s, ind, out)
        elif isinstance(s, L.Store):
            emu = self._emulated_buffer(s.buffer)
            v = s.value
            if emu and isinstance(v, L.Cast) and self.d.emulated.get(v.dtype.name) is emu:
                # Storing rounds: a cast into the type right before it need not round first.
                value = emu.store.format(f"(({emu.compute}){self.expr(v.a, 11)})")
            elif emu:
                value = emu.store.format(self.expr(v))
            else:
                value = self.expr(v)
            if s.buffer in self._scalars:
                out.append(f"{pad}{s.buffer} = {value};")
            else:
                out.append(f"{pad}{s.buffer}[{self.expr(s.index)}] = {value};")
        elif isinstance(s, L.Let):
            out.append(f"{pad}{{")
            ct = self.value_ctype(s.var.dtype)
            out.append(f"{pad}  const {ct} {s.var.name} = {self.expr(s.value)};")
            self.stmt(s.body, ind + 1, out)
            out.append(f"{pad}}}")
        elif isinstance(s, L.Allocate):
            self.allocate(s, ind, out)
        elif isinstance(s, L.If):
            out.append(f"{pad}if ({self.expr(s.cond)}) {{")
            self.stmt(s.then, ind + 1, out)
            if s.else_ is not None:
                out.append(f"{pad}}} else {{")
                self.stmt(s.else_, ind + 1, out)
            out.append(f"{pad}}}")
        else:
            raise TypeError(f"cannot render statement {s!r}")

    def for_loop(self, s: L.For, ind: int, out: list[str]) -> None:
        pad = "  " * ind
        pragma = self.d.loop_pragmas.get(s.kind, "")
        ann = dict(s.annotations)
        if s.kind == "parallel" and int(ann.get("work", self.d.parallel_min_work)) < (
            self.d.parallel_min_work
        ):
            pragma = ""
        if pragma:
            out.append(pragma.format(**ann) if "{" in pragma else pragma)
        v = s.var.name
        start = self.expr(s.start)
        if isinstance(s.start, L.Const) and s.start.value == 0:
            cond = self.expr(s.extent, 7)
        else:
            cond = self.expr(L.add(s.start, s.extent), 7)
        out.append(f"{pad}for (int {v} = {start}; {v} < {cond}; ++{v}) {{")
        self.stmt(s.body, ind + 1, out)
        out.append(f"{pad}}}")

    def allocate(self, s: L.Allocate, ind: int, out: list[str]) -> None:
        pad = "  " * ind
        ct = self.ctype(s.dtype)
        self._buffers[s.buffer] = s.dtype
        out.append(f"{pad}{{")
        if s.scope == "register" and s.size == 1:
            self._scalars.add(s.buffer)
            out.append(f"{pad}  {self.value_ctype(s.dtype)} {s.buffer};")
            self.stmt(s.body, ind + 1, out)
            self._scalars.discard(s.buffer)
        elif s.size * s.dtype.itemsize <= 1 << 16:
            out.append(f"{pad}  {ct} {s.buffer}[{s.size}];")
            self.stmt(s.body, ind + 1, out)
        else:
            out.append(f"{pad}  {ct}* {s.buffer} = ({ct}*)malloc(sizeof({ct}) * {s.size});")
            self.stmt(s.body, ind + 1, out)
            out.append(f"{pad}  free({s.buffer});")
        out.append(f"{pad}}}")

    # ---- kernels ------------------------------------------------------------------------------

    def signature(self, k: L.Kernel) -> str:
        params = []
        for p in k.params:
            const = "" if p.is_output else "const "
            params.append(f"{const}{self.ctype(p.dtype)}* {self.d.restrict} {p.name}".strip())
        return f"{self.d.kernel_prefix} {k.name}({', '.join(params)})"

    def kernel(self, k: L.Kernel) -> str:
        self._scalars: set[str] = set()
        self._buffers: dict[str, DType] = {p.name: p.dtype for p in k.params}
        lines = [self.signature(k) + " {"]
        self.stmt(k.body, 1, lines)
        lines.append("}")
        return "\n".join(lines)
