"""The torch frontend: trace a `torch.nn.Module` with torch.export and convert its ATen graph to
the graph IR, with no detour through an ONNX file.

    graph = load_torch(module, example_inputs=(x,))
    lib = modelc.compile(module, example_inputs=(x,), target="cpu")

Why torch.export and not `torch.fx.symbolic_trace`: export traces by running the module on
example values (non-strict mode), so Python control flow on shapes, `x.size(0)` arithmetic,
`isinstance` checks and library code (nn.TransformerEncoder's fast-path checks, HuggingFace-style
mask helpers) simply run; symbolic tracing fails on all of those. Export also yields a functional
graph (no in-place ops, no aliasing) of ATen op overloads with fixed schemas, where every node
carries torch's own shape and dtype of its result; symbolic tracing yields an open-ended mix of
`call_module` / `call_method` / Python-function nodes (`F.relu`, `x.relu()`, `nn.ReLU`,
`torch.relu` are four spellings of one op) without types. A symbolic-trace fallback would double
the converters for graphs that export handles anyway (what export cannot trace, data-dependent
control flow, symbolic tracing cannot either), so there is none: an export failure is a
`ModelLoadError` carrying torch's reason.

How the graph becomes IR:

- **Decompositions.** The exported graph is lowered with `run_decompositions`, using torch's
  default table minus every op that has a converter here (`fx_ops/`). Ops modelc maps well stay
  whole (`linear`, `layer_norm`, `scaled_dot_product_attention`, `hardswish`, upsampling, ...,
  so the IR matches what the ONNX frontend makes of the same model); everything else is
  decomposed by torch into the core ATen op set, most of which has a converter.
- **Converters.** One small function per ATen overload (`fx_ops/`, by family), found by the
  overload name (`aten.add.Tensor`). A node whose op has none is an `UnsupportedOpError` naming
  the op, the node, the module it sits in, and the user's source line.
- **Constants.** Parameters, buffers and lifted tensor constants are numpy constants named by
  their module path (`layer1.0.conv1.weight`). A node whose tensor inputs are all constants is
  evaluated by torch itself at import (`arange`, `full`, position ids, weight preprocessing in
  `forward`): exact torch semantics, and such subgraphs need no converter. Random ops are never
  folded.
- **Shapes.** `example_inputs` fix every shape (modelc compiles static shapes); each converted
  value is checked against torch's recorded shape and dtype, so a converter bug surfaces at the
  node that has it.
- **Names.** Graph inputs are the forward signature's parameter names (`input_ids`), or
  `input_names`. Outputs are `output_0, output_1, ...` in the order of torch's flattened outputs,
  or the keys when `forward` returns a dict or a named tuple, or `output_names`. Every other value
  is named after its fx node (`convolution_3`); IR nodes carry the fx node name as `loc`.
- **Mode.** The module is traced in eval mode (dropout off, batch norm on running statistics);
  its training flags are restored afterwards, as `torch.onnx.export` does.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from modelc.errors import Error, ModelLoadError, ShapeError, UnsupportedOpError, VerifyError
from modelc.frontend.fx_ops.dtypes import array_to_tensor, tensor_to_array, to_dtype
from modelc.frontend.fx_ops.node import FxNode, source_line
from modelc.frontend.fx_ops.registry import lookup
from modelc.frontend.fx_ops.trace import export_program
from modelc.ir.graph import Constant, Graph, GraphBuilder, Value
from modelc.ir.types import TensorType

SUPPORTED_OPS_DOC = "docs/fx_frontend.md"


def load_torch(
    module: Any,
    example_inputs: Any = None,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> Graph:
    """Trace `module` on `example_inputs` (a tensor or a tuple of positional arguments) and
    convert it to a graph-IR `Graph`.

    Without `example_inputs`, `input_shapes` (`{"x": (1, 3, 224, 224)}`, by forward parameter
    name) makes float32 example inputs of those shapes.
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(
            f"load_torch takes a torch.nn.Module, not a {type(module).__name__}; for a "
            "TorchScript or ONNX file, export it to ONNX and compile that"
        )
    args = _example_args(torch, module, example_inputs, input_shapes)
    program = export_program(module, args)
    return _Importer(program, type(module).__name__, input_names, output_names).run()


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ModelLoadError(
            "compiling a torch.nn.Module needs PyTorch, which is not installed "
            f"({e}); install it (pip install 'modelc[torch]') or export the model to ONNX "
            "and compile the .onnx file"
        ) from e
    return torch


def _example_args(
    torch: Any,
    module: Any,
    example_inputs: Any,
    input_shapes: Mapping[str, Sequence[int]] | None,
) -> tuple[Any, ...]:
    if example_inputs is not None:
        if input_shapes:
            raise ShapeError(
                "pass example_inputs or input_shapes for a torch module, not both: the example "
                "inputs already fix the shapes"
            )
        args = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        # numpy arrays are welcome as examples (modelc's runtime takes them too).
        return tuple(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args)
    params = _forward_params(module)
    if not input_shapes:
        shown = ", ".join(params) or "x"
        raise ShapeError(
            f"compiling {type(module).__name__} needs example inputs: pass "
            f"example_inputs=(tensor, ...) for forward({shown}) (they fix the static shapes "
            "and dtypes), or input_shapes={name: shape} for float32 inputs"
        )
    unknown = [k for k in input_shapes if k not in params]
    if unknown:
        raise ShapeError(
            f"input_shapes names {', '.join(map(repr, unknown))}, which forward() of "
            f"{type(module).__name__} does not take; its parameters are {', '.join(params)}"
        )
    missing = [p for p in params[: len(input_shapes)] if p not in input_shapes]
    if missing:
        raise ShapeError(
            f"input_shapes gives no shape for forward parameter(s) {', '.join(missing)}; "
            "give one per leading parameter, or pass example_inputs"
        )
    return tuple(torch.zeros(tuple(input_shapes[p])) for p in params[: len(input_shapes)])


def _forward_params(module: Any) -> list[str]:
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in sig.parameters.values() if p.kind in kinds]


# ---- conversion ------------------------------------------------------------------------------


class _Importer:
    """Converts one exported program; lives for one `load_torch` call."""

    def __init__(
        self,
        program: Any,
        name: str,
        input_names: Sequence[str] | None,
        output_names: Sequence[str] | None,
    ) -> None:
        self.ep = program
        self.b = GraphBuilder(name, fold=True)
        self.input_names = list(input_names) if input_names is not None else None
        self.output_names = list(output_names) if output_names is not None else None
        # fx node name -> modelc value (str), a list of them (multi-output ops), None, or a
        # Python value (non-tensor results).
        self.env: dict[str, Any] = {}
        # modelc constant value -> its torch tensor, for evaluating nodes on constants.
        self.tensors: dict[str, Any] = {}

    def run(self) -> Graph:
        self._add_placeholders()
        for node in self.ep.graph.nodes:
            if node.op == "call_function":
                self._convert(node)
            elif node.op == "get_attr":
                raise UnsupportedOpError(
                    f"node {node.name!r} reads the submodule {node.target!r}: control-flow "
                    "operators (torch.cond, torch.map, while_loop) are not supported by modelc"
                )
            elif node.op == "output":
                self._set_outputs(node)
        return self.b.build()

    # ---- placeholders: parameters, buffers, constants, user inputs ---------------------------

    def _add_placeholders(self) -> None:
        """User inputs first (they keep their names whatever the parameters are called), then
        parameters, buffers and lifted constants as constants."""
        from torch.export.graph_signature import InputKind, TensorArgument

        specs = [s for s in self.ep.graph_signature.input_specs if hasattr(s.arg, "name")]
        user = [
            s for s in specs if s.kind == InputKind.USER_INPUT and isinstance(s.arg, TensorArgument)
        ]
        names = self._user_input_names(user)
        nodes = {n.name: n for n in self.ep.graph.nodes if n.op == "placeholder"}
        for spec in user:
            arg = spec.arg.name
            val = nodes[arg].meta["val"]
            what = f"input {names[arg]!r}"
            t = TensorType(tuple(int(d) for d in val.shape), to_dtype(val.dtype, what))
            self.env[arg] = self.b.add_input(names[arg], t)
        state = {**self.ep.state_dict, **self.ep.constants}
        for spec in specs:
            arg = spec.arg.name
            if spec.kind == InputKind.USER_INPUT:
                if arg not in self.env:  # a non-tensor input torch already baked into the graph
                    self.env[arg] = getattr(spec.arg, "value", None)
            elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
                self.env[arg] = self._add_tensor_constant(state[spec.target], spec.target)
            else:
                raise UnsupportedOpError(
                    f"input {arg!r} is a {spec.kind.name.lower()} input ({spec.target}); modelc "
                    "compiles modules whose state is tensors (parameters, buffers, constants)"
                )

    def _user_input_names(self, specs: Sequence[Any]) -> dict[str, str]:
        """Placeholder name -> graph input name (export names placeholders after forward's
        parameters already)."""
        placeholders = [s.arg.name for s in specs]
        if self.input_names is None:
            return {p: p for p in placeholders}
        if len(self.input_names) != len(placeholders):
            raise ShapeError(
                f"input_names gives {len(self.input_names)} names, but the module takes "
                f"{len(placeholders)} tensor inputs ({', '.join(placeholders)})"
            )
        return dict(zip(placeholders, self.input_names))

    def _add_tensor_constant(self, tensor: Any, name: str) -> str:
        what = f"constant {name!r}"
        value = self.b.add_constant(
            tensor_to_array(tensor),
            name,
            TensorType(tuple(tensor.shape), to_dtype(tensor.dtype, what)),
        )
        self.tensors[value] = tensor.detach()
        return value

    # ---- nodes -------------------------------------------------------------------------------

    def _resolve(self, arg: Any) -> Any:
        import torch.fx

        if isinstance(arg, torch.fx.Node):
            return self.env[arg.name]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self._resolve(a) for a in arg)
        return arg

    def _convert(self, node: Any) -> None:
        if node.target is operator.getitem:
            self.env[node.name] = self._getitem(node)
            return
        if self._fold_with_torch(node):
            return
        n = FxNode(node, builder=self.b, resolve=self._resolve)
        fn = lookup(n.target)
        if fn is None and _draws_random(node):
            raise UnsupportedOpError(
                f"{n.describe()}: {n.target} draws random numbers; modelc compiles deterministic "
                "inference graphs (make the tensor a buffer or an input)"
            )
        if fn is None:
            raise UnsupportedOpError(
                f"{n.describe()}: {n.target} is not supported by modelc (the supported ATen ops "
                f"are listed in {SUPPORTED_OPS_DOC}); a custom module can often be rewritten "
                "with supported ops"
            )
        marks = (len(self.b.nodes), len(self.b.constants))
        try:
            result = fn(n)
        except Error as e:
            if str(e).startswith(n.describe()):
                raise
            raise type(e)(f"{n.describe()}: {e}") from e
        if isinstance(result, (list, tuple)):
            self.env[node.name] = [
                self._claim(v, f"{node.name}_{k}" if k else node.name, marks)
                for k, v in enumerate(result)
            ]
            for k, v in enumerate(self.env[node.name]):
                self._check(n, v, n.out_val(k))
        elif isinstance(result, str):
            value = self._claim(result, node.name, marks)
            self._check(n, value, n.out_val())
            self.env[node.name] = value
        else:
            self.env[node.name] = result

    def _getitem(self, node: Any) -> Any:
        source, index = node.args
        values = self.env[source.name]
        if not isinstance(values, (list, tuple)):
            raise VerifyError(f"node {node.name!r} indexes {source.name!r}, which is not a tuple")
        if index >= len(values) or values[index] is None:
            stack = source_line(node.meta.get("stack_trace"))
            raise UnsupportedOpError(
                f"node {source.name!r} ({source.target}): output {index} is not supported by "
                f"modelc, but the model reads it{f' at {stack}' if stack else ''}"
            )
        return values[index]

    def _fold_with_torch(self, node: Any) -> bool:
        """Evaluate a deterministic ATen op whose tensor inputs are all constants with torch;
        its results become constants. Returns whether it did."""
        import torch

        if not isinstance(node.target, torch._ops.OpOverload):
            return False
        if _draws_random(node):
            return False
        if not all(self._is_constant(self.env.get(a.name)) for a in node.all_input_nodes):
            return False
        val = node.meta.get("val")
        outs = val if isinstance(val, (tuple, list)) else [val]
        if not all(isinstance(v, torch.Tensor) for v in outs):
            return False

        def real(a: Any) -> Any:
            if isinstance(a, torch.fx.Node):
                return self._torch_value(self.env[a.name])
            if isinstance(a, (list, tuple)):
                return type(a)(real(x) for x in a)
            return a

        with torch.no_grad():
            result = node.target(*real(node.args), **{k: real(v) for k, v in node.kwargs.items()})
        if isinstance(result, (tuple, list)):
            self.env[node.name] = [
                self._add_tensor_constant(r, f"{node.name}_{k}") for k, r in enumerate(result)
            ]
        else:
            self.env[node.name] = self._add_tensor_constant(result, node.name)
        return True

    def _is_constant(self, value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return all(self._is_constant(v) for v in value)
        return isinstance(value, str) and self.b.is_constant(value)

    def _torch_value(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(self._torch_value(v) for v in value)
        if value not in self.tensors:
            self.tensors[value] = array_to_tensor(self.b.constant(value))
        return self.tensors[value]

    def _check(self, n: FxNode, value: Any, val: Any) -> None:
        """The converted value must have torch's shape and dtype (a converter bug otherwise)."""
        if not isinstance(value, str) or not hasattr(val, "shape"):
            return
        got = self.b.types[value]
        want = TensorType(tuple(int(d) for d in val.shape), to_dtype(val.dtype, n.describe()))
        if (got.shape, got.dtype) != (want.shape, want.dtype):
            raise VerifyError(
                f"{n.describe()}: the converter made {got.dtype}{list(got.shape)}, but torch "
                f"computes {want.dtype}{list(want.shape)} (a bug in modelc's converter for "
                f"{n.target})"
            )

    # ---- names -------------------------------------------------------------------------------

    def _claim(self, value: Any, name: str, marks: tuple[int, int]) -> Any:
        """Give a value the current converter made (IR nodes and constants past `marks`) its fx
        node's name; values it passed through (inputs, earlier values) keep theirs."""
        if not isinstance(value, str):
            return value
        node_mark, const_mark = marks
        made = any(o.name == value for nd in self.b.nodes[node_mark:] for o in nd.outputs)
        if not made and value not in list(self.b.constants)[const_mark:]:
            return value
        new = self.b.fresh(name)
        self._rename(value, new, node_mark)
        return new

    def _rename(self, value: str, new: str, start: int) -> None:
        """Rename `value` in the builder: its type, its constant, nodes from index `start`."""
        b = self.b
        b.types[new] = b.types.pop(value)
        if value in b.constants:
            c = b.constants.pop(value)
            b.constants[new] = Constant(Value(new, c.value.type), c.data)
        if value in self.tensors:
            self.tensors[new] = self.tensors.pop(value)
        for k in range(start, len(b.nodes)):
            nd = b.nodes[k]
            if value in nd.inputs or any(o.name == value for o in nd.outputs):
                b.nodes[k] = replace(
                    nd,
                    inputs=tuple(new if i == value else i for i in nd.inputs),
                    outputs=tuple(Value(new, o.type) if o.name == value else o for o in nd.outputs),
                )

    # ---- outputs -----------------------------------------------------------------------------

    def _set_outputs(self, node: Any) -> None:
        from torch.export.graph_signature import OutputKind

        specs = self.ep.graph_signature.output_specs
        (flat,) = node.args
        values = []
        for spec, arg in zip(specs, flat):
            if spec.kind != OutputKind.USER_OUTPUT:
                what = spec.kind.name.lower().replace("_", " ")
                raise UnsupportedOpError(
                    f"forward() writes {spec.target!r} ({what}); modelc compiles stateless "
                    "inference graphs: no in-place updates of inputs or buffers in forward"
                )
            value = self._resolve(arg)
            if not isinstance(value, str):
                raise UnsupportedOpError(
                    f"output {len(values)} of forward() is {value!r}, not a tensor; modelc "
                    "compiles modules whose outputs are tensors"
                )
            values.append(value)
        names = self._output_names(len(values))
        outputs: list[str] = []
        inputs = {v.name for v in self.b.inputs}
        for value, name in zip(values, names):
            if value in inputs or value in outputs or name in inputs:
                (value,) = self.b.add_node("copy", [value], loc=name, hints=[name], fold=False)
            elif value != name:
                new = self.b.fresh(name)
                self._rename(value, new, 0)
                self._rename_env(value, new)
                value = new
            outputs.append(value)
        self.b.set_outputs(outputs)

    def _rename_env(self, value: str, new: str) -> None:
        for k, v in self.env.items():
            if v == value:
                self.env[k] = new
            elif isinstance(v, list):
                self.env[k] = [new if x == value else x for x in v]

    def _output_names(self, count: int) -> list[str]:
        if self.output_names is not None:
            if len(self.output_names) != count or len(set(self.output_names)) != count:
                raise ShapeError(
                    f"output_names gives {list(self.output_names)}, but the module returns "
                    f"{count} tensors (names must be unique)"
                )
            return list(self.output_names)
        spec = getattr(self.ep.call_spec, "out_spec", None)
        keys = _container_keys(spec)
        if keys is not None and len(keys) == count and len(set(keys)) == count:
            return keys
        return [f"output_{k}" for k in range(count)]


def _draws_random(node: Any) -> bool:
    """Whether the node's op draws random numbers (torch tags such ops)."""
    import torch

    tags = getattr(node.target, "tags", ())
    return torch.Tag.nondeterministic_seeded in tags


def _children(spec: Any) -> list[Any]:
    if spec is None:
        return []
    if hasattr(spec, "children"):
        return list(spec.children())
    return list(getattr(spec, "children_specs", []))


def _container_keys(spec: Any) -> list[str] | None:
    """The keys of a dict / field names of a named tuple that `forward` returns, when each entry
    is one tensor; None otherwise."""
    children = _children(spec)
    if not children or any(_children(c) for c in children):
        return None  # a single tensor, or nested containers: flat numbering is clearer
    context = spec.context
    if spec.type is dict or (isinstance(context, list) and context and spec.type is not list):
        keys = list(context) if isinstance(context, (list, tuple)) else None
        if keys and all(isinstance(k, str) for k in keys):
            return keys
    fields = getattr(spec.type, "_fields", None)
    if fields:
        return [str(f) for f in fields]
    return None
