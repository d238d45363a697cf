"""Small CNNs for 28x28 and 32x32 inputs. Each takes already-normalized input and returns logits;
the :class:`~advkit.models.wrappers.Normalized` wrapper owns the [0,1] -> normalized step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeNet(nn.Module):
    """LeNet-style net (two 5x5 conv + pool blocks, two linear layers) for MNIST-sized inputs, cheap enough
    to train and attack on a laptop CPU."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, input_size: int = 28, width: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 5, padding=2)
        self.conv2 = nn.Conv2d(width, 2 * width, 5, padding=2)
        side = input_size // 4
        self.fc1 = nn.Linear(2 * width * side * side, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class SmallCNN(nn.Module):
    """The fast adversarial training paper's MNIST net (Wong, Rice, Kolter 2020): two 4x4 stride-2 convs
    (16, 32 channels) and a 100-unit hidden layer. ``width`` multiplies every layer's size (capacity matters
    more for adversarial than for clean training, Madry et al. 2018)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, input_size: int = 28, width: int = 1):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.conv1 = nn.Conv2d(in_chans, 16 * width, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16 * width, 32 * width, 4, stride=2, padding=1)
        side = input_size // 4
        self.fc1 = nn.Linear(32 * width * side * side, 100 * width)
        self.fc2 = nn.Linear(100 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class PreActBlock(nn.Module):
    """A pre-activation residual block (He et al. 2016): BN-ReLU-conv twice, plus the shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(in_planes, planes, 1, stride, bias=False)
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet (He et al. 2016) for 32x32 inputs, the fast-AT paper's CIFAR model."""

    def __init__(self, num_blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10, in_chans: int = 3,
                 width: int = 64):
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        layers = []
        for i, n in enumerate(num_blocks):
            layers.append(self._make_layer(width * 2 ** i, n, 1 if i == 0 else 2))
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(self.in_planes)
        self.linear = nn.Linear(self.in_planes, num_classes)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
