"""PyramidNet (Han, Kim & Kim, CVPR 2017) for CIFAR: basic blocks, width growing linearly by α over all blocks,
zero-padded identity shortcuts (avg-pooled when strided). Default: depth 110, α = 48 (the paper's CIFAR model,
final width 16 + 48 = 64 features)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PyramidBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        shortcut = F.avg_pool2d(x, 2, ceil_mode=True) if self.stride != 1 else x
        if self.pad:
            shortcut = torch.cat([shortcut, shortcut.new_zeros(shortcut.shape[0], self.pad, *shortcut.shape[2:])], 1)
        return self.body(x) + shortcut


class PyramidNet(nn.Module):
    def __init__(self, in_chans: int = 3, depth: int = 110, alpha: int = 48) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"PyramidNet depth must be 6n + 2, got {depth}")
        n = (depth - 2) // 6
        step = alpha / (3 * n)
        layers, width, cin = [nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)], 16.0, 16
        for stage in range(3):
            for i in range(n):
                width += step
                cout = int(round(width))
                layers.append(PyramidBlock(cin, cout, 2 if (i == 0 and stage > 0) else 1))
                cin = cout
        self.features = nn.Sequential(
            *layers, nn.BatchNorm2d(cin), nn.ReLU(True), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.num_features = cin

    def forward(self, x):
        return self.features(x)
