"""The graph passes on real exports: transformer blocks written by both torch exporters fuse
into layer_norm / gelu / attention and still match onnxruntime; BN-carrying CNNs lose every
batch_norm to fold-batchnorm."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

import modelc
from modelc.frontend.onnx import load_onnx
from modelc.ir.graph import Graph
from modelc.passes.registry import PassContext, parse_pipeline, run_pipeline

GRAPH_PASSES = "fold-constants,canonicalize,fold-batchnorm,fuse-patterns,eliminate-dead-code"
DECOMPOSED = {"reduce_mean", "erf", "tanh", "pow", "sqrt", "reciprocal", "softmax", "exp"}


def _block(approximate: str) -> Any:
    """Linear -> LayerNorm -> GELU -> two-head self-attention written out by hand (q @ k^T /
    sqrt(d), softmax, @ v) -> Linear, with non-trivial LayerNorm affine parameters."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l1, self.ln = nn.Linear(32, 48), nn.LayerNorm(48)
            self.act, self.l2 = nn.GELU(approximate=approximate), nn.Linear(48, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.act(self.ln(self.l1(x)))
            q, k, v = (
                y[..., i * 16 : (i + 1) * 16].reshape(2, 5, 2, 8).transpose(1, 2) for i in range(3)
            )
            a = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1) @ v
            return self.l2(torch.cat([a.transpose(1, 2).reshape(2, 5, 16), y[..., :32]], -1))

    torch.manual_seed(0)
    net = Block().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net, (2, 5, 32)


def _encoder() -> Any:
    """A BERT-style encoder: nn.TransformerEncoder, 2 layers, hidden 64, 4 heads, GELU."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, activation="gelu", batch_first=True)
    net = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim == 1:  # LayerNorm weights near 1, every bias away from 0
                p.copy_(
                    torch.randn_like(p) * 0.2
                    + (1.0 if "norm" in name and "weight" in name else 0.0)
                )
    return net, (2, 10, 64)


def _export(net: Any, shape: tuple[int, ...], path: Path, dynamo: bool, opset: int) -> Path:
    import torch
    import zoo

    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    kw: dict[str, Any] = {"input_names": ["input"], "output_names": ["output"]}
    with warnings.catch_warnings(), zoo._quiet_torch_logs():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(net, (x,), str(path), dynamo=True, external_data=False, **kw)
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=opset, **kw)
    return path


def _graph_passes(graph: Graph) -> tuple[Graph, dict[str, Any]]:
    ctx = PassContext(verify=True)
    return run_pipeline(graph, parse_pipeline(GRAPH_PASSES), ctx), ctx.reports


def _matches_onnxruntime(path: Path, graph: Graph, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    lib = modelc.compile(graph, target="cpu", verify=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(lib(x), want, atol=1e-4, rtol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize(
    "dynamo, opset, approximate",
    [(False, 14, "tanh"), (False, 17, "none"), (True, 18, "none")],
    ids=["legacy-opset14-tanh", "legacy-opset17-erf", "dynamo"],
)
def test_transformer_block_fuses_and_matches(tmp_path, dynamo, opset, approximate) -> None:
    """opset 14 writes LayerNorm as ReduceMean/Sub/Pow/Div; 17 as LayerNormalization (the
    frontend decomposes it); the dynamo exporter writes Gelu and LayerNormalization ops."""
    net, shape = _block(approximate)
    path = _export(net, shape, tmp_path / "block.onnx", dynamo, opset)
    graph = load_onnx(path)
    fused, _ = _graph_passes(graph)
    ops = Counter(n.op for n in fused.nodes)
    assert ops["layer_norm"] == 1 and ops["gelu"] == 1 and ops["attention"] == 1, ops
    assert not DECOMPOSED & set(ops), ops
    ln = next(n for n in fused.nodes if n.op == "layer_norm")
    assert all(ln.inputs[1:]), "gamma and beta are folded into the layer_norm"
    _matches_onnxruntime(path, graph, shape)


@pytest.mark.torch
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
def test_transformer_encoder_fuses_and_matches(tmp_path, dynamo: bool) -> None:
    net, shape = _encoder()
    path = _export(net, shape, tmp_path / "encoder.onnx", dynamo, 17)
    graph = load_onnx(path)
    fused, reports = _graph_passes(graph)
    ops = Counter(n.op for n in fused.nodes)
    assert (ops["attention"], ops["layer_norm"], ops["gelu"]) == (2, 4, 2), ops
    assert not DECOMPOSED & set(ops), ops
    assert len(fused.nodes) < len(graph.nodes) * 0.65, (len(graph.nodes), len(fused.nodes))
    _matches_onnxruntime(path, graph, shape)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_batchnorm_folds_away_in_zoo_cnns(zoo_model, name: str) -> None:
    """Exported without constant folding, every BN follows a conv and folds into it (the
    numbers are checked against onnxruntime by test_zoo_cpu's BN test, through the same
    pipeline)."""
    graph = load_onnx(zoo_model(name, dynamo=False, fold=False))
    n_bn = sum(n.op == "batch_norm" for n in graph.nodes)
    fused, reports = _graph_passes(graph)
    assert not any(n.op == "batch_norm" for n in fused.nodes)
    assert reports["fold-batchnorm"]["conv-batchnorm"] == n_bn
    assert len(fused.nodes) == len(graph.nodes) - n_bn
