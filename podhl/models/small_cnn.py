"""A small CNN for digits/MNIST (timm has none this small)."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Conv-BN-ReLU ×2, max-pool, Conv-BN-ReLU ×2, global average pool → ``num_features`` (= 2·width)."""

    def __init__(self, in_chans: int = 1, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(in_chans, width), _block(width, width), nn.MaxPool2d(2),
            _block(width, 2 * width), _block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.num_features = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
