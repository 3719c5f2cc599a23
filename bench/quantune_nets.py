"""The five CNNs of the Quantune benchmark zoo (bench/quantune_zoo.py trains and exports them).

Quantune's experiments tune six ImageNet CNNs, three of them "fragile" under int8 (MobileNet,
SqueezeNet, ShuffleNet). These nets keep each family's defining motif at a width that trains on
scikit-learn's digits in well under a minute on one core:

- resnet: basic blocks (two 3x3 conv-BN, residual add, strided 1x1 conv-BN shortcut);
- mobilenetv2: inverted residuals (1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 linear
  bottleneck, residual add when the shape allows);
- squeezenet: fire modules (1x1 squeeze, 1x1 and 3x3 expands concatenated), ceil-mode max pools,
  no BatchNorm, a 1x1 conv + ReLU classifier with global average pooling;
- shufflenet: ShuffleNetV2 units (channel split, depthwise 3x3 branch, concat, channel shuffle
  as reshape-transpose-reshape; the downsampling unit has two strided branches);
- googlenet: inception blocks (1x1, 1x1->3x3, 1x1->3x3 (torchvision's 5x5 stand-in) and
  3x3 max pool->1x1 branches, concatenated), conv-BN-ReLU everywhere as torchvision has it.

Every net takes (batch, 1, S, S) images (any S >= 8: global average pooling before the head)
and returns 10 logits. Built under a fixed seed so retraining reproduces the same weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _cbr(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
    """conv (no bias) + BN [+ ReLU]."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Head(nn.Module):
    """Global average pool, dropout, fully connected classifier."""

    def __init__(self, cin: int, classes: int = 10, dropout: float = 0.1) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


# ---- ResNet --------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_cbr(cin, cout, 3, stride), _cbr(cout, cout, 3, act=False))
        self.shortcut = (
            _cbr(cin, cout, 1, stride, act=False) if stride != 1 or cin != cout else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _cbr(1, 8, 3),
            BasicBlock(8, 8, 1),
            BasicBlock(8, 16, 2),
            BasicBlock(16, 32, 2),
        )
        self.head = _Head(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---- MobileNetV2 ---------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_cbr(cin, hidden, 1, act=False), nn.ReLU6(inplace=True)]
        layers += [*_cbr(hidden, hidden, 3, stride, groups=hidden, act=False), nn.ReLU6(True)]
        layers += [*_cbr(hidden, cout, 1, act=False)]  # linear bottleneck: no activation
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    # (expand t, channels c, repeats n, first stride s), as in the paper's table
    SETTINGS = ((1, 8, 1, 1), (4, 16, 2, 2), (4, 24, 2, 2))

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_cbr(1, 16, 3, act=False), nn.ReLU6(inplace=True)]
        cin = 16
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [*_cbr(cin, 64, 1, act=False), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = _Head(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---- SqueezeNet ----------------------------------------------------------------------------------


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU(inplace=True))
        self.expand3 = nn.Sequential(
            nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1(s), self.expand3(s)], 1)


class SqueezeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(32, 8, 16),
            Fire(32, 8, 16),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(32, 16, 32),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.1),
            nn.Conv2d(64, 10, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        # torchvision's init: with the ReLU in front of the pooled logits, default-init biases
        # leave whole classes dead from the first step and they never recover
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier[1].weight, 0.0, 0.01)
        nn.init.constant_(self.classifier[1].bias, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ---- ShuffleNetV2 --------------------------------------------------------------------------------


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: stride 1 splits the channels and transforms one half; stride 2 runs
    both branches (each strided) on the whole input and doubles the channels."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        bin_ = cin if stride == 2 else half
        self.branch2 = nn.Sequential(
            _cbr(bin_, half, 1),
            _cbr(half, half, 3, stride, groups=half, act=False),
            _cbr(half, half, 1),
        )
        if stride == 2:
            self.branch1 = nn.Sequential(
                _cbr(cin, cin, 3, stride, groups=cin, act=False), _cbr(cin, half, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.branch2(b)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _cbr(1, 16, 3),
            ShuffleUnit(16, 32, 2),
            ShuffleUnit(32, 32, 1),
            ShuffleUnit(32, 64, 2),
            ShuffleUnit(64, 64, 1),
            _cbr(64, 96, 1),
        )
        self.head = _Head(96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---- GoogLeNet -----------------------------------------------------------------------------------


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pp: int) -> None:
        super().__init__()
        self.b1 = _cbr(cin, c1, 1)
        self.b2 = nn.Sequential(_cbr(cin, c3r, 1), _cbr(c3r, c3, 3))
        self.b3 = nn.Sequential(_cbr(cin, c5r, 1), _cbr(c5r, c5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _cbr(cin, pp, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _cbr(1, 16, 3),
            nn.MaxPool2d(3, 2, 1, ceil_mode=True),
            Inception(16, 8, 8, 12, 4, 6, 6),  # -> 32
            Inception(32, 16, 12, 24, 6, 8, 8),  # -> 56
            nn.MaxPool2d(3, 2, 1, ceil_mode=True),
            Inception(56, 16, 16, 32, 8, 8, 8),  # -> 64
        )
        self.head = _Head(64, dropout=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---- registry ------------------------------------------------------------------------------------

NETS: dict[str, Callable[[], nn.Module]] = {
    "resnet": ResNet,
    "mobilenetv2": MobileNetV2,
    "squeezenet": SqueezeNet,
    "shufflenet": ShuffleNetV2,
    "googlenet": GoogLeNet,
}
# Seeds differ per net so no two share an initialization stream.
SEEDS = {name: 100 + i for i, name in enumerate(NETS)}


def build(name: str) -> nn.Module:
    """A freshly initialized (untrained) net, seeded; eval mode is the caller's choice."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEEDS[name])
        return NETS[name]()
