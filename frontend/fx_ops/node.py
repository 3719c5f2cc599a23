"""What a converter sees of one torch.export node.

`FxNode` wraps the `torch.fx.Node`, its arguments bound to the op schema's names (so converters
read `n.arg("stride")` whether the graph passed it by position, by keyword or left the default),
the builder, and the node's output metadata (`meta["val"]`: torch's own shape and dtype of every
result, which converters use instead of re-deriving reshape targets or type promotion).

A tensor argument resolves to its modelc value name; everything else (ints, floats, lists, None,
strings, dtypes) stays a Python value. Graphs also pass Python numbers where the schema says
Tensor (`aten.sub.Tensor(1.0, x)`), so `is_tensor` asks the graph, not the schema, and
`operand()` turns such a number into a constant of the dtype the op computes in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modelc.errors import ShapeError, UnsupportedOpError
from modelc.frontend.fx_ops.dtypes import to_dtype
from modelc.ir.dtypes import DType
from modelc.ir.graph import GraphBuilder
from modelc.ir.types import TensorType

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')


def source_line(stack_trace: str | None) -> str:
    """`file.py:42 (forward): y = self.conv(x)` for the innermost frame of a node's stack
    trace (the user's line that made the op), or "" when torch recorded none."""
    if not stack_trace:
        return ""
    frames = _FRAME.findall(stack_trace)
    if not frames:
        return ""
    path, line, fn, code = frames[-1]
    return f"{path.rsplit('/', 1)[-1]}:{line} ({fn}): {code.strip()}"


class FxNode:
    def __init__(
        self,
        node: Any,
        *,
        builder: GraphBuilder,
        resolve: Callable[[Any], Any],
    ) -> None:
        self.node = node
        self.b = builder
        self.loc = str(node.name)
        self.target = str(node.target)
        self._raw, self._args = self._bind(node, resolve)

    # ---- identity and errors -----------------------------------------------------------------

    def describe(self) -> str:
        """`node 'conv2d_3' (aten.convolution.default) in module 'layers.0' (Conv2d) at
        model.py:42 (forward): y = self.conv(x)`: the prefix of every message about the node."""
        text = f"node {self.loc!r} ({self.target})"
        stack = self.node.meta.get("nn_module_stack") or {}
        if stack:
            path, kind = list(stack.values())[-1]
            kind = str(getattr(kind, "__name__", kind)).rsplit(".", 1)[-1]
            if path:
                text += f" in module {path!r} ({kind})"
        where = source_line(self.node.meta.get("stack_trace"))
        return f"{text} at {where}" if where else text

    def unsupported(self, msg: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.describe()}: {msg}")

    def shape_error(self, msg: str) -> ShapeError:
        return ShapeError(f"{self.describe()}: {msg}")

    # ---- arguments ---------------------------------------------------------------------------

    @staticmethod
    def _bind(node: Any, resolve: Callable[[Any], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Arguments by schema name, defaults filled; raw (fx) and resolved (modelc) forms."""
        schema = getattr(node.target, "_schema", None)
        raw: dict[str, Any] = {}
        if schema is None:
            raw = {f"arg{i}": a for i, a in enumerate(node.args)} | dict(node.kwargs)
        else:
            for i, a in enumerate(schema.arguments):
                if not a.kwarg_only and i < len(node.args):
                    raw[a.name] = node.args[i]
                elif a.name in node.kwargs:
                    raw[a.name] = node.kwargs[a.name]
                elif a.has_default_value():
                    raw[a.name] = a.default_value
        return raw, {k: resolve(v) for k, v in raw.items()}

    def arg(self, name: str, default: Any = None) -> Any:
        """The argument as the converter uses it: a value name for a tensor, else the Python
        value (`default` when the schema has no such argument)."""
        return self._args.get(name, default)

    def is_tensor(self, name: str) -> bool:
        """Whether the graph passes a tensor for `name` (not a Python number)."""
        import torch.fx

        return isinstance(self._raw.get(name), torch.fx.Node)

    def tensor(self, name: str) -> str:
        """A tensor argument's value; the op needs a tensor there."""
        v = self._args.get(name)
        if not self.is_tensor(name) or not isinstance(v, str):
            raise self.unsupported(f"argument {name!r} should be a tensor, got {v!r}")
        return v

    def tensors(self, name: str) -> list[str]:
        """A Tensor[] argument's values."""
        vs = self._args.get(name) or []
        if not all(isinstance(v, str) for v in vs):
            raise self.unsupported(f"argument {name!r} should be a list of tensors, got {vs!r}")
        return list(vs)

    def ints(self, name: str, rank: int | None = None) -> list[int]:
        """An int[] argument; a one-entry list (or a bare int) repeats to `rank` entries, as
        torch's pooling and conv arguments do."""
        v = self._args.get(name)
        vals = [int(v)] if isinstance(v, (int, np.integer)) else [int(x) for x in (v or [])]
        if rank is not None and len(vals) == 1:
            vals = vals * rank
        return vals

    def operand(self, name: str, dtype: DType) -> str:
        """A tensor or number argument as a value of `dtype` (numbers become 0-d constants)."""
        v = self._args.get(name)
        if self.is_tensor(name):
            return self.cast(v, dtype)
        return self.scalar(v, dtype)

    def meta(self, name: str) -> Any:
        """torch's example value of an argument (a FakeTensor for tensors)."""
        import torch.fx

        v = self._raw.get(name)
        return v.meta.get("val") if isinstance(v, torch.fx.Node) else v

    # ---- values ------------------------------------------------------------------------------

    def type(self, value: str) -> TensorType:
        return self.b.types[value]

    def shape(self, value: str) -> tuple[int, ...]:
        return self.b.types[value].shape

    def rank(self, value: str) -> int:
        return self.b.types[value].rank

    def dtype(self, value: str) -> DType:
        return self.b.types[value].dtype

    def out_val(self, index: int = 0) -> Any:
        val = self.node.meta.get("val")
        return val[index] if isinstance(val, (tuple, list)) else val

    @property
    def out_shape(self) -> tuple[int, ...]:
        """torch's shape of the (first) output."""
        return tuple(int(d) for d in self.out_val().shape)

    @property
    def out_dtype(self) -> DType:
        """torch's dtype of the (first) output."""
        return to_dtype(self.out_val().dtype, self.describe())

    def axis(self, value: int, rank: int) -> int:
        """A possibly negative torch dim as a non-negative one (0-d tensors take dim 0 / -1)."""
        r = max(rank, 1)
        if not -r <= value < r:
            raise self.shape_error(f"dim {value} is out of range for rank {rank}")
        return value % r

    def axes(self, values: Sequence[int] | None, rank: int) -> list[int]:
        """Sorted non-negative dims; None or [] means all of them (torch's reductions)."""
        if not values:
            return list(range(rank))
        return sorted({self.axis(v, rank) for v in values})

    # ---- emitting ----------------------------------------------------------------------------

    def op(self, op: str, *inputs: str, **attrs: Any) -> str:
        """Emit one single-output graph-IR op; returns its value (a constant when folded)."""
        (out,) = self.b.add_node(op, inputs, attrs, loc=self.loc, hints=[f"{self.loc}_{op}"])
        return out

    def constant(self, data: Any, dtype: DType | None = None) -> str:
        arr = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype.numpy)
        t = None if dtype is None else TensorType(arr.shape, dtype)
        return self.b.add_constant(arr, f"{self.loc}_const", t)

    def scalar(self, value: float | int | bool, dtype: DType) -> str:
        """A 0-d constant of `dtype` (binary IR ops want equal dtypes)."""
        return self.constant(np.asarray(value).astype(dtype.numpy), dtype)

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        shape = tuple(int(d) for d in shape)
        return x if self.shape(x) == shape else self.op("reshape", x, shape=shape)

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        perm = tuple(int(p) for p in perm)
        return x if perm == tuple(range(len(perm))) else self.op("transpose", x, perm=perm)

    def cast(self, x: str, dtype: DType) -> str:
        return x if self.dtype(x) == dtype else self.op("cast", x, to=dtype)

    def slice(self, x: str, axis: int, start: int, end: int, step: int = 1) -> str:
        """Python's `x[..., start:end:step]` on one axis (clamped as Python clamps), as the IR's
        full-rank slice; no node when it keeps everything."""
        shape = self.shape(x)
        dim = shape[axis]
        start, end, step = slice(start, end, step).indices(dim)
        if step < 0:
            raise self.unsupported("negative slice steps are not supported")
        if (start, end, step) == (0, dim, 1):
            return x
        starts, ends, steps = [0] * len(shape), list(shape), [1] * len(shape)
        starts[axis], ends[axis], steps[axis] = start, max(end, start), step
        return self.op("slice", x, starts=starts, ends=ends, steps=steps)
