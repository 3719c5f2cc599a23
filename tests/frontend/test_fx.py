"""The torch.fx / torch.export frontend: every converter against eager PyTorch, the zoo end to end,
and the driver's rules (names, constants, eval mode, errors).

Op cases run through the reference interpreter (no C build: each costs one torch.export), the
zoo models through the `cpu` target. Eager PyTorch is the oracle throughout.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import modelc  # noqa: E402
from modelc.errors import ModelLoadError, ShapeError, UnsupportedOpError  # noqa: E402
from modelc.frontend.fx import load_torch  # noqa: E402
from modelc.frontend.fx_ops.registry import supported_ops  # noqa: E402
from modelc.ir.graph import Graph  # noqa: E402
from modelc.ir.interpreter import run_graph  # noqa: E402
from modelc.ir.parser import parse_graph  # noqa: E402
from modelc.ir.printer import print_graph  # noqa: E402

pytestmark = pytest.mark.torch

ZOO = ["mlp", "lenet", "resnet18", "mobilenetv2", "squeezenet"]


class Fn(nn.Module):
    """A function as a module, with optional submodules and buffers it reads as `self`."""

    def __init__(self, fn: Callable[..., Any], **parts: Any) -> None:
        super().__init__()
        self.fn = fn
        for name, part in parts.items():
            if isinstance(part, torch.Tensor):
                self.register_buffer(name, part)
            else:
                setattr(self, name, part)

    def forward(self, *args: Any) -> Any:
        return self.fn(self, *args)


def randn(*shape: int, seed: int = 0) -> Any:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def check(module: nn.Module, *args: Any, atol: float = 1e-5, rtol: float = 1e-5) -> Graph:
    """Import `module` through fx, run the graph in the interpreter, compare with eager."""
    module.eval()
    graph = load_torch(module, args)
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    got = run_graph(graph, {v.name: a.numpy() for v, a in zip(graph.inputs, tensors)})
    with torch.no_grad():
        want = torch.utils._pytree.tree_leaves(module(*args))
    assert len(got) == len(want)
    for g, w in zip(got.values(), want):
        w = w.numpy()
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        np.testing.assert_allclose(g, w, atol=atol, rtol=rtol)
    return graph


def ops(graph: Graph) -> set[str]:
    return {n.op for n in graph.nodes}


X = randn(2, 3, 8, 8)
V = randn(2, 5, 16, seed=1)
W = randn(2, 5, 16, seed=2)

# ---- elementwise -----------------------------------------------------------------------------

UNARY: dict[str, Callable[[Any], Any]] = {
    "relu": F.relu,
    "relu6": F.relu6,
    "hardtanh": lambda x: F.hardtanh(x, -0.5, 0.7),
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
    "elu": F.elu,
    "exp": torch.exp,
    "log": lambda x: torch.log(x.abs() + 1),
    "sqrt": lambda x: x.abs().sqrt(),
    "rsqrt": lambda x: torch.rsqrt(x.abs() + 0.1),
    "neg_abs_erf": lambda x: torch.erf(-x.abs()),
    "reciprocal": lambda x: 1 / (x.abs() + 0.5),
    "floor_ceil": lambda x: torch.floor(x * 3) + torch.ceil(x * 2),
    "clamp": lambda x: x.clamp(-0.3, 0.4) + x.clamp(min=0.1),
    "pow2": lambda x: x**2,
    "pow_half": lambda x: x.abs() ** 0.5,
}


def table(fns: dict[str, Callable[..., Any]]) -> nn.Module:
    """One module computing every entry (one export for many ops); outputs are named by key, so
    a mismatch names the case."""
    return Fn(lambda self, *xs: {name: fn(*xs) for name, fn in fns.items()})


def test_unary() -> None:
    check(table(UNARY), V)


BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add_sub_mul_div": lambda a, b: (a + b) * (a - b) / (b.abs() + 1),
    "scalars": lambda a, b: (a + 2.5) * 3 - 1.5 / (b.abs() + 1) + (2 - a),
    "alpha": lambda a, b: torch.add(a, b, alpha=2) + torch.sub(a, b, alpha=0.5),
    "broadcast": lambda a, b: a * b[:, :1, :] + b[0],
    "pow_tensor": lambda a, b: a.abs() ** b,
    "floor_div": lambda a, b: torch.div(a, b.abs() + 0.5, rounding_mode="floor"),
    "trunc_div": lambda a, b: torch.div(a, b.abs() + 0.5, rounding_mode="trunc"),
    "max_min": lambda a, b: torch.maximum(a, b) - torch.minimum(a, b),
    "where": lambda a, b: torch.where(a > b, a, b) + torch.where(a != b, a, 0.0),
    "compare": lambda a, b: (a <= b).float() + (a >= 0.5).float() + (a == a).float(),
    "logic": lambda a, b: ((a > 0) & (b > 0) | (a < -1) ^ (b < -1)).float(),
    "masked_fill": lambda a, b: a.masked_fill(b < 0, -1.0),
    "not": lambda a, b: torch.logical_not(a > b).to(torch.float32),
}


def test_binary() -> None:
    check(table(BINARY), V, W)


def test_type_promotion() -> None:
    """int64 tensors meet floats and Python numbers as torch promotes them."""
    ids = torch.arange(10).reshape(2, 5)
    x = randn(2, 5)
    g = check(
        Fn(lambda self, i, x: (i * x + i / 3, i + 2, i * 2 + 1 > 4, i.float().mean())), ids, x
    )
    assert "cast" in ops(g)


# ---- nn --------------------------------------------------------------------------------------

CONV: dict[str, nn.Module] = {
    "stride_pad": nn.Conv2d(4, 8, 3, 2, 1),
    "groups_dilation": nn.Conv2d(4, 6, 3, 1, 2, dilation=2, groups=2),
    "depthwise_no_bias": nn.Conv2d(4, 4, 3, 1, 1, groups=4, bias=False),
    "same": nn.Conv2d(4, 5, 3, padding="same"),
    "rect": nn.Conv2d(4, 5, (1, 3), (2, 1), (0, 1)),
}


def test_conv() -> None:
    convs = nn.ModuleDict(CONV)
    mod = Fn(
        lambda self, x: {k: c(x) for k, c in self.convs.items()} | {"1d": self.c1(x[:, :, 0])},
        convs=convs,
        c1=nn.Conv1d(4, 3, 5, 2, 2),
    )
    g = check(mod, randn(1, 4, 9, 9))
    assert ops(g) == {"conv", "gather"}


def test_conv_transpose() -> None:
    up = nn.ConvTranspose2d(4, 6, 3, 2, 1, output_padding=1, groups=2)
    g = check(up, randn(1, 4, 5, 5))
    assert ops(g) == {"conv_transpose"}


def test_linear_family() -> None:
    w = randn(16, 8)

    def fn(self: Any, x: Any, y: Any) -> Any:
        return (
            self.fc(x),  # 3-D input
            self.nobias(x[0]),
            torch.addmm(self.b, x[0], self.w, beta=0.5, alpha=2.0),
            x[0] @ self.w,  # mm
            torch.bmm(x, y.transpose(1, 2)),
            torch.matmul(x.unsqueeze(1), self.w),  # broadcast matmul
        )

    mod = Fn(fn, fc=nn.Linear(16, 4), nobias=nn.Linear(16, 3, bias=False), w=w, b=randn(8))
    g = check(mod, V, W)
    assert ops(g) <= {"matmul", "add", "mul", "transpose", "gather", "reshape"}


def test_batch_norm() -> None:
    def bn(channels: int, kind: type) -> nn.Module:
        m = kind(channels)
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
        nn.init.uniform_(m.weight, 0.5, 1.5)
        nn.init.normal_(m.bias)
        return m

    def fn(self: Any, x: Any) -> tuple[Any, ...]:
        return self.bn2d(x), self.bn1d(x[:, 0, 0, :5]), self.plain(x)

    parts = {"bn2d": bn(3, nn.BatchNorm2d), "bn1d": bn(5, nn.BatchNorm1d)}
    g = check(Fn(fn, plain=nn.BatchNorm2d(3, affine=False), **parts), X)
    assert "batch_norm" in ops(g)


def test_layer_norm_mirrors_onnx() -> None:
    """The ONNX frontend's LayerNormalization decomposition, with and without affine."""
    ln = nn.LayerNorm(16)
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    g = check(ln, V)
    assert [n.op for n in g.nodes] == [
        "reduce_mean",
        "sub",
        "mul",
        "reduce_mean",
        "add",
        "sqrt",
        "reciprocal",
        "mul",
        "mul",
        "add",
    ]
    check(nn.LayerNorm([5, 16], elementwise_affine=False), V)


def test_softmax() -> None:
    check(Fn(lambda self, x: (F.softmax(x, 1), F.log_softmax(x, -1), x.softmax(0))), V)


def test_scaled_dot_product_attention() -> None:
    q, k, v = randn(2, 4, 6, 8), randn(2, 4, 7, 8, seed=1), randn(2, 4, 7, 8, seed=2)
    masks = {"add_mask": randn(6, 7, seed=3), "keep": randn(2, 1, 6, 7, seed=3) > -0.5}

    def fn(self: Any, q: Any, k: Any, v: Any) -> dict[str, Any]:
        sdpa = F.scaled_dot_product_attention
        return {
            "plain": sdpa(q, k, v),
            "float_mask": sdpa(q, k, v, attn_mask=self.add_mask),
            "bool_mask": sdpa(q, k, v, attn_mask=self.keep),
            "causal": sdpa(q, k[:, :, :6], v[:, :, :6], is_causal=True),
            "scale": sdpa(q, k, v, scale=0.3),
        }

    g = check(Fn(fn, **masks), q, k, v)
    assert {"matmul", "softmax"} <= ops(g)


def test_embedding_and_dropout() -> None:
    emb = nn.Embedding(20, 8)
    mod = Fn(lambda self, i: self.drop(self.emb(i)), emb=emb, drop=nn.Dropout(0.5))
    g = check(mod, torch.tensor([[1, 5, 19], [0, 2, 2]]))
    assert ops(g) == {"gather"}


def test_normalizations_and_composed_activations() -> None:
    """Ops torch decomposes into converted ones (group / instance norm, softplus, mish, selu,
    celu, logsigmoid, F.normalize, roll, einsum, baddbmm) and their converters."""
    fns = {
        "group_norm": lambda self, x: self.gn(x),
        "instance_norm": lambda self, x: self.inorm(x),
        "softplus_mish": lambda self, x: F.softplus(x) + F.mish(x) + F.logsigmoid(x),
        "selu_celu": lambda self, x: F.selu(x) + F.celu(x, 0.5),
        "sign_flip": lambda self, x: torch.sign(x - 0.1).flip(1, -1),
        "roll_index_select": lambda self, x: x.roll(2, -1).index_select(1, self.pick),
        "normalize": lambda self, x: F.normalize(x, dim=1) + x.norm(p=1, dim=-1, keepdim=True),
        "any_all": lambda self, x: (
            ((x > 1).any(1) | (x > -2).all(1)).float() + (x > 0).any().float()
        ),
        "topk_values": lambda self, x: x.topk(3, dim=-1)[0],
        "topk_indices": lambda self, x: x.topk(2, dim=1, largest=False)[1],
        "einsum_baddbmm": lambda self, x: (
            torch.einsum("nchw,nchw->nc", x, x)
            + torch.baddbmm(x[:, 0], x[:, 1], x[:, 2], alpha=0.5).sum((1, 2))[:, None]
        ),
        "adaptive_max": lambda self, x: F.adaptive_max_pool2d(x, 1) + F.adaptive_max_pool2d(x, 2),
    }
    gn = nn.GroupNorm(2, 4)
    inorm = nn.InstanceNorm2d(4, affine=True)
    for m in (gn, inorm):
        nn.init.normal_(m.weight)
        nn.init.normal_(m.bias)
    mod = Fn(
        lambda self, x: {k: fn(self, x) for k, fn in fns.items()},
        gn=gn,
        inorm=inorm,
        pick=torch.tensor([3, 0, 0]),
    )
    check(mod, randn(2, 4, 6, 6))


# ---- pooling and resizing --------------------------------------------------------------------

POOL: dict[str, nn.Module] = {
    "max": nn.MaxPool2d(3, 2, 1),
    "max_ceil": nn.MaxPool2d(2, ceil_mode=True),
    "max_dilation": nn.MaxPool2d(2, 1, dilation=2),
    "avg": nn.AvgPool2d(3, 2, 1),
    "avg_exclude_pad_ceil": nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
    "adaptive_1": nn.AdaptiveAvgPool2d(1),
    "adaptive_divisible": nn.AdaptiveAvgPool2d((3, 1)),
    "adaptive_uneven": nn.AdaptiveAvgPool2d((4, 3)),
}


def test_pool() -> None:
    check(table(POOL), randn(1, 3, 9, 7))


def test_pool_1d_3d() -> None:
    fns = {
        "max1d": lambda x: F.max_pool1d(x[:, :, 0], 3, 2, 1),
        "avg1d": lambda x: F.avg_pool1d(x[:, :, 0], 2, ceil_mode=True),
        "adaptive1d": lambda x: F.adaptive_avg_pool1d(x[:, :, 0], 3),
        "max3d": lambda x: F.max_pool3d(x.unsqueeze(2).expand(1, 3, 4, 9, 7), 2),
        "avg3d": lambda x: F.avg_pool3d(x.unsqueeze(2).expand(1, 3, 4, 9, 7), 3, 1, 1),
        "nearest3d": lambda x: F.interpolate(x.unsqueeze(2), scale_factor=(2, 1, 2)),
    }
    check(table(fns), randn(1, 3, 9, 7))


RESIZE: dict[str, Callable[[Any], Any]] = {
    "nearest_x2": lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
    "nearest_size": lambda x: F.interpolate(x, size=(8, 11), mode="nearest"),
    "nearest_down": lambda x: F.interpolate(x, size=(3, 2), mode="nearest"),
    "nearest_exact": lambda x: F.interpolate(x, size=(8, 11), mode="nearest-exact"),
    "nearest_1d": lambda x: F.interpolate(x[:, :, 0], scale_factor=3, mode="nearest"),
    "bilinear_x2": lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
    "bilinear_size_align": lambda x: F.interpolate(
        x, size=(9, 4), mode="bilinear", align_corners=True
    ),
    "bilinear_frac": lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear"),
    "bilinear_bicubic": lambda x: F.interpolate(x, size=(9, 12), mode="bicubic"),
}


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_resize(mode: str) -> None:
    """Nearest becomes gathers / a broadcast (as in the ONNX frontend), bilinear IR resize."""
    fns = {k: fn for k, fn in RESIZE.items() if k.startswith(mode)}
    g = check(table(fns), randn(1, 2, 5, 7))
    assert ("resize" in ops(g)) == (mode == "bilinear")


# ---- tensor ops ------------------------------------------------------------------------------

TENSOR: dict[str, Callable[[Any], Any]] = {
    "flatten_view": lambda x: (x.flatten(1), x.view(2, -1), x.reshape(-1, 8)),
    "permute_transpose": lambda x: (x.permute(0, 2, 3, 1) * 1, x.transpose(1, 3).contiguous()),
    "squeeze": lambda x: x[:, :1].squeeze(1).unsqueeze(-1).squeeze(),
    "expand": lambda x: x[:, :1].expand(2, 3, 8, 8) + x[0, 0, 0].expand(8, 8),
    "cat": lambda x: torch.cat([x, x * 2, x[:, :1]], dim=1),
    "split": lambda x: [t * (k + 1) for k, t in enumerate(x.split([3, 5], dim=-1))],
    "chunk": lambda x: [t + k for k, t in enumerate(x.chunk(3, dim=2))],
    "unbind": lambda x: x.unbind(1),
    "slice": lambda x: (x[:, 1:, 2:7:2], x[..., -3:], x[:, :, ::3]),
    "select": lambda x: (x[:, 2], x[1, :, -1]),
    "repeat": lambda x: x[0].repeat(2, 1, 1, 2),
    "pad": lambda x: (
        F.pad(x, (1, 2, 0, 1), value=0.5),
        F.pad(x, (2, 1, 1, 1), mode="reflect"),
        F.pad(x, (1, 1, 2, 0), mode="replicate"),
    ),
    "like": lambda x: x + torch.ones_like(x) + x.new_full((8,), 2.0) + torch.zeros_like(x),
    "arange_folds": lambda x: x + torch.arange(8).float() * 0.5,
    "to_int": lambda x: (x * 4).to(torch.int64),
    "reductions": lambda x: (
        x.mean((2, 3), keepdim=True),
        x.sum(),
        x.amax(-1),
        x.max(dim=1)[0],
        x.max(dim=1)[1],
        x.argmax(-1),
        x.var(1),
        x.std(dim=(2, 3)),
    ),
}


def test_tensor() -> None:
    check(table(TENSOR), X)


def test_index_with_a_tensor() -> None:
    table = randn(10, 4)
    mod = Fn(
        lambda self, x, i: (x[:, self.idx], self.table[i], x[:, :, i[0]]),
        idx=torch.tensor([2, 0, 2]),
        table=table,
    )
    check(mod, X, torch.tensor([[1, 7], [3, 0]]))


# ---- the zoo, end to end ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_matches_eager(name: str) -> None:
    import zoo

    net = zoo.ZOO[name]()
    x = zoo.example_input(name)
    lib = modelc.compile(net, example_inputs=(torch.from_numpy(x),), target="cpu")
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(lib(x), want, atol=1e-4, rtol=1e-4)


# ---- the driver: names, constants, modes -----------------------------------------------------


def test_names_inputs_params_and_outputs() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, image: Any, bias: Any) -> dict[str, Any]:
            y = self.conv(image)
            return {"features": y, "shifted": y + bias}

    g = load_torch(Net(), (X, randn(4, 1, 1)))
    assert [v.name for v in g.inputs] == ["image", "bias"]
    assert g.outputs == ("features", "shifted")
    assert "conv.weight" in g.constant_map
    assert parse_graph(print_graph(g, constants="inline")) == g

    renamed = load_torch(
        Net(), (X, randn(4, 1, 1)), input_names=["a", "b"], output_names=["p", "q"]
    )
    assert [v.name for v in renamed.inputs] == ["a", "b"] and renamed.outputs == ("p", "q")


def test_outputs_that_are_inputs_or_repeated() -> None:
    g = check(Fn(lambda self, x: (x, torch.relu(x), torch.relu(x) * 1)), V)
    assert g.outputs == ("output_0", "output_1", "output_2")


def test_traces_in_eval_mode_and_restores_training_flags() -> None:
    net = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.9), nn.BatchNorm1d(5))
    net.train()
    g = load_torch(net, (V,))
    assert all(m.training for m in net.modules())
    assert "batch_norm" in ops(g)
    net.eval()
    with torch.no_grad():
        want = net(V).numpy()
    got = run_graph(g, {g.inputs[0].name: V.numpy()})
    np.testing.assert_allclose(next(iter(got.values())), want, atol=1e-5, rtol=1e-5)


def test_compile_routes_torch_modules_and_input_shapes() -> None:
    net = nn.Sequential(nn.Linear(16, 4), nn.ReLU())
    lib = modelc.compile(net, input_shapes={"input": (2, 16)})
    x = V[0, :2].numpy()
    with torch.no_grad():
        np.testing.assert_allclose(lib(x), net(V[0, :2]).numpy(), atol=1e-5)
    assert lib.inputs[0].name == "input" and lib.outputs[0].name == "output_0"


def test_every_registered_overload_exists_in_torch() -> None:
    for name in supported_ops():
        _, packet, overload = name.split(".")
        assert str(getattr(getattr(torch.ops.aten, packet), overload)) == name


# ---- errors ----------------------------------------------------------------------------------


def test_unsupported_op_names_op_node_module_and_line() -> None:
    class Scan(nn.Module):
        def forward(self, x: Any) -> Any:
            return torch.cumsum(x, dim=1)  # the line the message quotes

    with pytest.raises(UnsupportedOpError) as info:
        load_torch(Scan(), (V,))
    msg = str(info.value)
    assert "aten.cumsum.default" in msg and "node 'cumsum'" in msg
    assert "test_fx.py:" in msg and "return torch.cumsum(x, dim=1)" in msg


def test_reading_an_output_modelc_does_not_make() -> None:
    mod = Fn(lambda self, x: F.max_pool2d(x, 2, return_indices=True)[1].float())
    with pytest.raises(UnsupportedOpError, match="output 1 is not supported"):
        load_torch(mod, (X,))


def test_random_ops_are_named() -> None:
    with pytest.raises(UnsupportedOpError, match="aten.randn.default draws random numbers"):
        load_torch(Fn(lambda self, x: x + torch.randn(5, 16)), (V,))


def test_data_dependent_control_flow_is_a_load_error() -> None:
    mod = Fn(lambda self, x: x * 2 if x.sum() > 0 else x)
    with pytest.raises(ModelLoadError, match="torch.export could not trace"):
        load_torch(mod, (V,))


def test_missing_example_inputs() -> None:
    with pytest.raises(ShapeError, match="example_inputs"):
        load_torch(nn.ReLU())
    with pytest.raises(ShapeError, match="'y'.*does not take"):
        load_torch(nn.ReLU(), input_shapes={"y": (2,)})


def test_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModelLoadError, match="needs PyTorch"):
        load_torch(object(), ())


def test_not_a_module() -> None:
    with pytest.raises(ModelLoadError, match="torch.nn.Module"):
        load_torch(lambda x: x, (V,))


def test_sqrt_scale_is_the_onnx_exporters() -> None:
    """Scaled-dot-product attention scales q and k by sqrt(scale) each, as onnxscript does."""
    q = randn(1, 2, 4, 16)
    g = load_torch(Fn(lambda self, q: F.scaled_dot_product_attention(q, q, q)), (q,))
    scales = [
        float(g.constant(i))
        for n in g.nodes
        if n.op == "mul"
        for i in n.inputs
        if g.constant(i) is not None
    ]
    assert scales == pytest.approx([math.sqrt(1 / 4)] * 2)
