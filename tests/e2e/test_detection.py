"""Detection / segmentation-style nets, compiled from ONNX (both torch exporters) and from torch
via fx.

- `fpn`: a stride-2 conv backbone (conv-BN-ReLU), lateral 1x1 convs, a top-down pathway with
  `F.interpolate(scale_factor=2, mode="nearest")` + add, `nn.Upsample(nearest)` to merge the
  levels, a ConvTranspose2d head upsampling and a concat of the levels;
- `unet`: a U-Net with ConvTranspose2d and `nn.Upsample(bilinear)` decoders, concat skip
  connections, and a nearest `F.interpolate(size=...)` side output.

Batch norms carry random running statistics, so folding them (ONNX exporters) and keeping them
(fx) both have to be right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from three_paths import PATHS, check_path  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

pytestmark = pytest.mark.torch

SIZE = 32


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class FPN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = conv_bn(3, 8, 2)  # 16x16
        self.c2 = conv_bn(8, 16, 2)  # 8x8
        self.c3 = conv_bn(16, 32, 2)  # 4x4
        self.lateral = nn.ModuleList(nn.Conv2d(c, 16, 1) for c in (8, 16, 32))
        self.smooth = nn.Conv2d(16, 16, 3, 1, 1)
        self.merge = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.ConvTranspose2d(48, 6, 4, 2, 1)  # back to 32x32

    def forward(self, x: Any) -> Any:
        f1 = self.c1(x)
        f2 = self.c2(f1)
        f3 = self.c3(f2)
        p3 = self.lateral[2](f3)
        p2 = self.lateral[1](f2) + F.interpolate(p3, scale_factor=2, mode="nearest")
        p1 = self.lateral[0](f1) + F.interpolate(p2, scale_factor=2, mode="nearest")
        levels = [self.smooth(p1), self.merge(self.smooth(p2)), self.merge(self.merge(p3))]
        return self.head(torch.cat(levels, 1))


class UNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc1 = conv_bn(3, 8)  # 32x32
        self.enc2 = conv_bn(8, 16, 2)  # 16x16
        self.enc3 = conv_bn(16, 32, 2)  # 8x8
        self.up3 = nn.ConvTranspose2d(32, 16, 2, 2)
        self.dec2 = conv_bn(32, 16)
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec1 = conv_bn(24, 8)
        self.head = nn.Conv2d(8, 4, 1)
        self.side = nn.Conv2d(32, 4, 1)

    def forward(self, x: Any) -> Any:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([self.up3(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up2(d2), e1], 1))
        side = F.interpolate(self.side(e3), size=x.shape[-2:], mode="nearest")
        return self.head(d1) + side


def _seeded(net: nn.Module, seed: int) -> nn.Module:
    """Random biases and batch-norm statistics (running stats from a few training batches)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.normal_(m.bias, 0.0, 0.2)
                m.momentum = None
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.1)
        net.train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.randn(4, 3, SIZE, SIZE))
    return net.eval()


MODELS = {"fpn": lambda: _seeded(FPN(), 1), "unet": lambda: _seeded(UNet(), 2)}


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("detection")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model", list(MODELS))
def test_detection_net_matches_oracle(model: str, path: str, onnx_dir: Path) -> None:
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    graph = check_path(model, MODELS[model](), (x,), ("x",), path, onnx_dir)
    ops = {n.op for n in graph.nodes}
    assert {"conv_transpose", "concat"} <= ops
    if model == "unet":
        assert "resize" in ops
