"""The torch modules of the test zoo (see zoo.py, which is what tests import).

Each builder returns a small eval-mode network with seeded weights, shaped like a well-known
architecture so that the compiler meets the op patterns real models have (strided downsample,
residual adds, depthwise convs, ReLU6, concat of branches, ceil-mode pooling) at a size that
compiles and runs in seconds. The nets are kept apart from zoo.py so that collecting tests needs
no torch: only building a net imports this module.
"""

from __future__ import annotations

import torch
from torch import nn

# ---- shared helpers ------------------------------------------------------------------------------


def _seeded(build, seed: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Build under a private RNG state, then give every BatchNorm realistic running stats.

    Conv and Linear weights get He (fan-in) init and non-zero biases, so outputs are O(1) and a
    1e-4 tolerance is a real test (PyTorch's default init shrinks activations layer by layer).
    Running stats come from a few training-mode batches (so activations stay O(1) through deep
    nets instead of vanishing or exploding), and the affine parameters are randomised away from
    (1, 0), so a compiler that drops or misfolds BN fails the comparison.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build()
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.normal_(m.bias, 0.0, 0.1)
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        if bns:
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average over the calibration batches
                nn.init.uniform_(bn.weight, 0.5, 1.5)
                nn.init.normal_(bn.bias, 0.0, 0.2)
            net.train()
            with torch.no_grad():
                for _ in range(4):
                    net(torch.randn(8, *input_shape[1:]))
    return net.eval()


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


# ---- MLP -----------------------------------------------------------------------------------------


def mlp() -> nn.Module:
    """Gemm + ReLU + a Tanh head: the smallest graph, with a batch dimension of 4."""
    return _seeded(
        lambda: nn.Sequential(
            nn.Linear(64, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
            nn.Tanh(),
        ),
        seed=1,
        input_shape=(4, 64),
    )


# ---- LeNet ---------------------------------------------------------------------------------------


def lenet() -> nn.Module:
    """LeNet-5: 5x5 convs, max pooling, flatten into fully connected layers."""
    return _seeded(
        lambda: nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        ),
        seed=2,
        input_shape=(1, 1, 28, 28),
    )


# ---- ResNet-18 -----------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a residual add; a strided 1x1 conv-BN when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, cout, 3, stride), nn.ReLU(inplace=True), *_conv_bn(cout, cout, 3)
        )
        self.shortcut = (
            nn.Sequential(*_conv_bn(cin, cout, 1, stride))
            if stride != 1 or cin != cout
            else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18's layout ([2, 2, 2, 2] BasicBlocks, 7x7/2 stem, 3x3/2 max pool) at width 16."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            *_conv_bn(3, width, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        )
        layers: list[nn.Module] = []
        cin = width
        for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def resnet18() -> nn.Module:
    return _seeded(ResNet18, seed=3, input_shape=(1, 3, 64, 64))


# ---- MobileNetV2 ---------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 linear bottleneck; residual when shapes
    match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True)]
        layers += _conv_bn(hidden, cout, 1)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2's structure (t, c, n, s table, 1x1 head conv, global pool, classifier), slim."""

    SETTINGS = ((1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2), (6, 24, 2, 2), (6, 32, 1, 1))

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, 16, 3, 2), nn.ReLU6(inplace=True)]
        cin = 16
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [*_conv_bn(cin, 128, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenetv2() -> nn.Module:
    return _seeded(MobileNetV2, seed=4, input_shape=(1, 3, 64, 64))


# ---- SqueezeNet ----------------------------------------------------------------------------------


class Fire(nn.Module):
    """1x1 squeeze, then 1x1 and 3x3 expand branches concatenated on channels."""

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
    """SqueezeNet 1.1's layout: ceil-mode max pools between fire modules, a 1x1 conv classifier
    and global average pooling instead of fully connected layers."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2),
            nn.ReLU(inplace=True),
            pool,
            Fire(32, 8, 16),
            Fire(32, 8, 16),
            pool,
            Fire(32, 16, 32),
            Fire(64, 16, 32),
            pool,
            Fire(64, 24, 48),
            Fire(96, 32, 64),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Conv2d(128, classes, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def squeezenet() -> nn.Module:
    return _seeded(SqueezeNet, seed=5, input_shape=(1, 3, 64, 64))
