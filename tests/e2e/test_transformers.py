"""BERT-style encoders, compiled from ONNX (both torch exporters) and from torch via fx.

Two encoders at BERT-tiny-like dims (sequence 16, hidden 64, 4 heads, 2 layers), with int64
token ids as inputs:

- `torch_encoder`: torch.nn.TransformerEncoder (batch_first, GELU) behind token embeddings and
  learned positions, with a classifier head;
- `mini_bert`: a HuggingFace-style block written out by hand: token + position embeddings
  (nn.Embedding, position ids from a buffer), embedding LayerNorm, attention with the additive
  padding mask `(1 - mask) * finfo.min`, GELU feed-forward, post-LayerNorm residuals, and a tanh
  pooler; it returns (last_hidden_state, pooled).

Every parameter is random (biases too: zero biases hide operand mix-ups), and the padding mask
masks the tail of one sequence, so masking is exercised.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from three_paths import PATHS, check_path, import_path  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

pytestmark = pytest.mark.torch

VOCAB, SEQ, HIDDEN, HEADS, LAYERS, BATCH = 100, 16, 64, 4, 2, 2


def _randomized(net: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere: biases N(0, 0.1), LayerNorm scales around 1."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, p in net.named_parameters():
            with torch.no_grad():
                if isinstance(net.get_submodule(name.rpartition(".")[0]), nn.LayerNorm):
                    p.uniform_(0.5, 1.5) if name.endswith("weight") else p.normal_(0, 0.1)
                elif name.endswith("bias"):
                    p.normal_(0, 0.1)
    return net.eval()


# ---- torch.nn.TransformerEncoder -------------------------------------------------------------


class TorchEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, HIDDEN)
        self.pos = nn.Parameter(torch.randn(1, SEQ, HIDDEN) * 0.1)
        layer = nn.TransformerEncoderLayer(
            HIDDEN, HEADS, 2 * HIDDEN, dropout=0.1, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(HIDDEN, 8)

    def forward(self, input_ids: Any) -> Any:
        return self.head(self.encoder(self.tok(input_ids) + self.pos))


# ---- a HuggingFace-style encoder -------------------------------------------------------------


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head_dim = HIDDEN // HEADS
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.output = nn.Linear(HIDDEN, HIDDEN)

    def heads(self, x: Any) -> Any:
        b, s, _ = x.shape
        return x.view(b, s, HEADS, self.head_dim).transpose(1, 2)

    def forward(self, x: Any, mask: Any) -> Any:
        q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
        context = torch.matmul(F.softmax(scores, dim=-1), v).transpose(1, 2).contiguous()
        return self.output(context.view(x.shape[0], x.shape[1], HIDDEN))


class Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = SelfAttention()
        self.attention_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.intermediate = nn.Linear(HIDDEN, 4 * HIDDEN)
        self.out = nn.Linear(4 * HIDDEN, HIDDEN)
        self.output_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: Any, mask: Any) -> Any:
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        return self.output_norm(x + self.dropout(self.out(F.gelu(self.intermediate(x)))))


class MiniBert(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, HIDDEN)
        self.position_embeddings = nn.Embedding(2 * SEQ, HIDDEN)
        self.register_buffer("position_ids", torch.arange(2 * SEQ).unsqueeze(0))
        self.embedding_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
        self.pooler = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
        positions = self.position_ids[:, : input_ids.shape[1]]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        x = self.embedding_norm(x)
        dtype = x.dtype
        mask = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        for layer in self.layers:
            x = layer(x, mask)
        return x, torch.tanh(self.pooler(x[:, 0]))


# ---- inputs and cases ------------------------------------------------------------------------


def _inputs() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    mask = torch.ones(BATCH, SEQ, dtype=torch.int64)
    mask[1, SEQ - 5 :] = 0  # the second sequence is padded
    return ids, mask


MODELS = {
    "torch_encoder": (lambda: _randomized(TorchEncoder(), 1), ("input_ids",)),
    "mini_bert": (lambda: _randomized(MiniBert(), 2), ("input_ids", "attention_mask")),
}


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("transformers")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model", list(MODELS))
def test_encoder_matches_oracle(model: str, path: str, onnx_dir: Path) -> None:
    build, names = MODELS[model]
    args = _inputs()[: len(names)]
    check_path(model, build(), args, names, path, onnx_dir)


@pytest.mark.parametrize("model", list(MODELS))
def test_fx_and_onnx_make_the_same_compute(model: str, onnx_dir: Path) -> None:
    """The fx frontend mirrors the ONNX frontend's decompositions (LayerNormalization, Gelu,
    attention): both import the model into the same compute ops."""
    build, names = MODELS[model]
    net, args = build(), _inputs()[: len(names)]
    compute = {"matmul", "softmax", "gelu", "gather", "reduce_mean", "sqrt", "reciprocal", "tanh"}

    def count(path: str) -> Counter[str]:
        graph, _ = import_path(model, net, args, names, path, onnx_dir)
        return Counter(n.op for n in graph.nodes if n.op in compute)

    assert count("fx") == count("onnx-dynamo")
