"""A small CNN for digits/MNIST (timm has none this small)."""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":  # batch-independent: N processes × batch B train exactly like batch N·B
        return nn.GroupNorm(8, channels)
    raise ValueError(f"small_cnn norm must be 'batch' or 'group', got {kind!r}")


def _block(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), _norm(norm, cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Conv-Norm-ReLU ×2, max-pool, Conv-Norm-ReLU ×2, global average pool → ``num_features`` (= 2·width)."""

    def __init__(self, in_chans: int = 1, width: int = 32, norm: str = "batch") -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(in_chans, width, norm),
            _block(width, width, norm),
            nn.MaxPool2d(2),
            _block(width, 2 * width, norm),
            _block(2 * width, 2 * width, norm),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.num_features = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
