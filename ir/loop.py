"""Level 2: the loop IR.

A `Kernel` is a loop nest over flat buffers: `For` loops with a kind (serial, parallel,
vectorized, unrolled, gpu_block, gpu_thread, hls_pipeline), `Store`s of scalar expressions,
`Allocate`d scratch buffers with a memory scope, `If`, `Let` and `Seq`. Expressions are
`Const`, `Var`, `Load`, `BinOp`, `UnOp`, `Call` (intrinsics: exp, tanh, requantize, ...),
`Cast` and `Select`.

Buffers are flat and row-major; index arithmetic is explicit in the IR so that every renderer
(C, CUDA, HLS C++, LLVM) prints the same computation. Schedules are plain parameters of the
lowering (`Schedule`), so a tuner can search them.

The smart constructors (`add`, `mul`, ... and the operators on `Expr`) fold constants and drop
`x*1`, `x+0`, keeping generated code readable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from modelc.ir.dtypes import DType, boolean, f32, i32

INDEX = i32  # dtype of loop variables and index arithmetic

FOR_KINDS = frozenset(
    {"serial", "parallel", "vectorized", "unrolled", "gpu_block", "gpu_thread", "hls_pipeline"}
)
SCOPES = frozenset({"global", "local", "shared", "register"})
BINOPS = frozenset(
    {"+", "-", "*", "/", "%", "min", "max", "<", "<=", ">", ">=", "==", "!=", "&&", "||"}
    | {"&", "|", "^", "<<", ">>"}
)
COMPARISONS = frozenset({"<", "<=", ">", ">=", "==", "!=", "&&", "||"})
# Binding strength of the infix operators, as in C; the IR printer and every C-family
# renderer parenthesize by it (`min`/`max` are not infix).
PRECEDENCE = {
    "||": 1,
    "&&": 2,
    "|": 3,
    "^": 4,
    "&": 5,
    "==": 6,
    "!=": 6,
    "<": 7,
    "<=": 7,
    ">": 7,
    ">=": 7,
    "<<": 8,
    ">>": 8,
    "+": 9,
    "-": 9,
    "*": 10,
    "/": 10,
    "%": 10,
}
# Intrinsics every renderer maps (see codegen/*): name -> arity. Renderers may add more.
INTRINSICS = {
    "exp": 1,
    "log": 1,
    "sqrt": 1,
    "rsqrt": 1,
    "tanh": 1,
    "erf": 1,
    "abs": 1,
    "floor": 1,
    "ceil": 1,
    "round": 1,  # round half to even (onnx Round)
    "sin": 1,
    "cos": 1,
    "pow": 2,
    "fmod": 2,
    "sigmoid": 1,
}


class Expr:
    """Base of expressions. Arithmetic operators build folded `BinOp`s."""

    dtype: DType

    def __add__(self, o: ExprLike) -> Expr:
        return add(self, o)

    def __radd__(self, o: ExprLike) -> Expr:
        return add(o, self)

    def __sub__(self, o: ExprLike) -> Expr:
        return sub(self, o)

    def __rsub__(self, o: ExprLike) -> Expr:
        return sub(o, self)

    def __mul__(self, o: ExprLike) -> Expr:
        return mul(self, o)

    def __rmul__(self, o: ExprLike) -> Expr:
        return mul(o, self)

    def __truediv__(self, o: ExprLike) -> Expr:
        return div(self, o)

    def __floordiv__(self, o: ExprLike) -> Expr:
        return div(self, o)

    def __mod__(self, o: ExprLike) -> Expr:
        return mod(self, o)

    def __neg__(self) -> Expr:
        return UnOp("-", self)


ExprLike = Expr | int | float | bool


@dataclass(frozen=True, eq=True)
class Const(Expr):
    value: int | float | bool
    dtype: DType = i32


@dataclass(frozen=True, eq=True)
class Var(Expr):
    name: str
    dtype: DType = INDEX


@dataclass(frozen=True, eq=True)
class Load(Expr):
    buffer: str
    index: Expr
    dtype: DType = f32


@dataclass(frozen=True, eq=True)
class BinOp(Expr):
    op: str
    a: Expr
    b: Expr

    def __post_init__(self) -> None:
        if self.op not in BINOPS:
            raise ValueError(f"unknown binop {self.op}")

    @property
    def dtype(self) -> DType:  # type: ignore[override]
        return boolean if self.op in COMPARISONS else self.a.dtype


@dataclass(frozen=True, eq=True)
class UnOp(Expr):
    op: str  # "-" | "!" | "~"
    a: Expr

    @property
    def dtype(self) -> DType:  # type: ignore[override]
        return boolean if self.op == "!" else self.a.dtype


@dataclass(frozen=True, eq=True)
class Call(Expr):
    fn: str
    args: tuple[Expr, ...]
    dtype: DType = f32


@dataclass(frozen=True, eq=True)
class Cast(Expr):
    dtype: DType
    a: Expr


@dataclass(frozen=True, eq=True)
class Select(Expr):
    cond: Expr
    a: Expr
    b: Expr

    @property
    def dtype(self) -> DType:  # type: ignore[override]
        return self.a.dtype


# ---- statements ------------------------------------------------------------------------------


class Stmt:
    """Base of statements."""


@dataclass(frozen=True)
class For(Stmt):
    var: Var
    start: Expr
    extent: Expr
    body: Stmt
    kind: str = "serial"
    # Free-form hints for renderers (e.g. {"unroll": 4}, {"pipeline_ii": 1}).
    annotations: tuple[tuple[str, int | str], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in FOR_KINDS:
            raise ValueError(f"unknown loop kind {self.kind}")


@dataclass(frozen=True)
class Store(Stmt):
    buffer: str
    index: Expr
    value: Expr


@dataclass(frozen=True)
class Let(Stmt):
    """Bind an immutable scalar for the scope of `body`."""

    var: Var
    value: Expr
    body: Stmt


@dataclass(frozen=True)
class Allocate(Stmt):
    """Scratch buffer for `body`. A `register` buffer of size 1 renders as a plain scalar."""

    buffer: str
    dtype: DType
    size: int
    scope: str
    body: Stmt

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope}")


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    then: Stmt
    else_: Stmt | None = None


@dataclass(frozen=True)
class Seq(Stmt):
    stmts: tuple[Stmt, ...]

    def __post_init__(self) -> None:
        flat: list[Stmt] = []
        for s in self.stmts:
            flat.extend(s.stmts if isinstance(s, Seq) else (s,))
        object.__setattr__(self, "stmts", tuple(flat))


@dataclass(frozen=True)
class Param:
    """A kernel buffer parameter: flat, `size` elements of `dtype`."""

    name: str
    dtype: DType
    size: int
    is_output: bool = False


@dataclass(frozen=True)
class Kernel:
    name: str
    params: tuple[Param, ...]
    body: Stmt
    # What the kernel computes, for reports: fused ops, MACs, bytes.
    info: tuple[tuple[str, int | str], ...] = field(default=(), compare=False)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclass(frozen=True)
class Schedule:
    """Lowering knobs. Defaults give a plain, correct loop nest; targets and tuners override."""

    parallel: bool = True  # mark the outermost independent loop `parallel`
    vectorize: bool = True  # mark the innermost contiguous loop `vectorized` where legal
    unroll: int = 0
    tile: tuple[int, ...] = ()


# ---- smart constructors ------------------------------------------------------------------------


def const(v: ExprLike, dtype: DType | None = None) -> Expr:
    if isinstance(v, Expr):
        return v
    if dtype is None:
        dtype = boolean if isinstance(v, bool) else (i32 if isinstance(v, int) else f32)
    return Const(v, dtype)


def _is(e: Expr, v: int | float) -> bool:
    return isinstance(e, Const) and not isinstance(e.value, bool) and e.value == v


def add(a: ExprLike, b: ExprLike) -> Expr:
    a, b = const(a), const(b)
    if isinstance(a, Const) and isinstance(b, Const) and a.dtype == b.dtype:
        return Const(a.value + b.value, a.dtype)
    if _is(a, 0) and a.dtype == b.dtype:
        return b
    if _is(b, 0) and a.dtype == b.dtype:
        return a
    return BinOp("+", a, b)


def sub(a: ExprLike, b: ExprLike) -> Expr:
    a, b = const(a), const(b)
    if isinstance(a, Const) and isinstance(b, Const) and a.dtype == b.dtype:
        return Const(a.value - b.value, a.dtype)
    if _is(b, 0):
        return a
    return BinOp("-", a, b)


def mul(a: ExprLike, b: ExprLike) -> Expr:
    a, b = const(a), const(b)
    if isinstance(a, Const) and isinstance(b, Const) and a.dtype == b.dtype:
        return Const(a.value * b.value, a.dtype)
    if (_is(a, 0) or _is(b, 0)) and a.dtype.is_int:
        return Const(0, a.dtype)
    if _is(a, 1):
        return b
    if _is(b, 1):
        return a
    return BinOp("*", a, b)


def div(a: ExprLike, b: ExprLike) -> Expr:
    a, b = const(a), const(b)
    if _is(b, 1):
        return a
    if isinstance(a, Const) and isinstance(b, Const) and a.dtype.is_int and b.dtype.is_int:
        return Const(int(a.value) // int(b.value), a.dtype)
    return BinOp("/", a, b)


def mod(a: ExprLike, b: ExprLike) -> Expr:
    a, b = const(a), const(b)
    if _is(b, 1):
        return Const(0, a.dtype)
    return BinOp("%", a, b)


def minimum(a: ExprLike, b: ExprLike) -> Expr:
    return BinOp("min", const(a), const(b))


def maximum(a: ExprLike, b: ExprLike) -> Expr:
    return BinOp("max", const(a), const(b))


def lt(a: ExprLike, b: ExprLike) -> Expr:
    return BinOp("<", const(a), const(b))


def le(a: ExprLike, b: ExprLike) -> Expr:
    return BinOp("<=", const(a), const(b))


def ge(a: ExprLike, b: ExprLike) -> Expr:
    return BinOp(">=", const(a), const(b))


def gt(a: ExprLike, b: ExprLike) -> Expr:
    return BinOp(">", const(a), const(b))


def eq(a: ExprLike, b: ExprLike) -> Expr:
    return BinOp("==", const(a), const(b))


def land(*conds: Expr) -> Expr:
    """Conjunction; constant-true terms drop out."""
    terms = [c for c in conds if not (isinstance(c, Const) and c.value is True)]
    if not terms:
        return Const(True, boolean)
    out = terms[0]
    for t in terms[1:]:
        out = BinOp("&&", out, t)
    return out


def call(fn: str, *args: ExprLike, dtype: DType | None = None) -> Expr:
    xs = tuple(const(a) for a in args)
    return Call(fn, xs, dtype or xs[0].dtype)


def cast(dtype: DType, a: ExprLike) -> Expr:
    a = const(a)
    if a.dtype == dtype:
        return a
    if isinstance(a, Const):
        v = a.value
        v = bool(v) if dtype.kind == "bool" else (float(v) if dtype.is_float else int(v))
        return Const(v, dtype)
    return Cast(dtype, a)


def select(cond: Expr, a: ExprLike, b: ExprLike) -> Expr:
    return Select(cond, const(a), const(b))


def seq(*stmts: Stmt | Iterable[Stmt]) -> Stmt:
    flat: list[Stmt] = []
    for s in stmts:
        if isinstance(s, Stmt):
            flat.append(s)
        else:
            flat.extend(s)
    return flat[0] if len(flat) == 1 else Seq(tuple(flat))


def flat_index(idx: Sequence[ExprLike], shape: Sequence[int]) -> Expr:
    """Row-major flat index of `idx` into `shape` (broadcast dims of size 1 contribute 0)."""
    out: Expr = Const(0)
    stride = 1
    for i, d in reversed(list(zip(idx, shape))):
        if d != 1:
            out = add(mul(const(i), stride), out)
        stride *= d
    return out


def loop_nest(
    vars_: Sequence[Var],
    extents: Sequence[int],
    body: Stmt,
    kinds: Sequence[str] | None = None,
) -> Stmt:
    """`for v0 in extents[0]: for v1 ...: body`, skipping nothing (extent-1 loops stay:
    they are cheap and keep index expressions uniform)."""
    kinds = kinds or ["serial"] * len(vars_)
    for v, e, k in reversed(list(zip(vars_, extents, kinds))):
        body = For(v, Const(0), Const(int(e)), body, k)
    return body
