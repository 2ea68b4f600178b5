"""EfficientNet-B0 for 32-px images as in kuangliu/pytorch-cifar ``models/efficientnet.py`` (3×3 stride-1 stem,
MBConv blocks with squeeze-excitation and swish, no 1280-d head: 320-d features). Drop-connect and dropout of
that file are left out (no effect at test time; regularization only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# expansion, out channels, blocks, kernel, stride (EfficientNet-B0)
CFG = (
    (1, 16, 1, 3, 1),
    (6, 24, 2, 3, 2),
    (6, 40, 2, 5, 2),
    (6, 80, 3, 3, 2),
    (6, 112, 3, 5, 1),
    (6, 192, 4, 5, 2),
    (6, 320, 1, 3, 1),
)


class SE(nn.Module):
    def __init__(self, cin: int, squeeze: int) -> None:
        super().__init__()
        self.se1, self.se2 = nn.Conv2d(cin, squeeze, 1), nn.Conv2d(squeeze, cin, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.se2(F.silu(self.se1(s))))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, se_ratio: float = 0.25) -> None:
        super().__init__()
        mid = expand * cin
        self.expand = None if expand == 1 else nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid))
        self.dw = nn.Sequential(
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False), nn.BatchNorm2d(mid)
        )
        self.se = SE(mid, max(1, int(cin * se_ratio)))
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = x if self.expand is None else F.silu(self.expand(x))
        out = self.project(self.se(F.silu(self.dw(out))))
        return out + x if self.residual else out


class EfficientNetB0(nn.Module):
    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        layers, cin = [nn.Conv2d(in_chans, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU(True)], 32
        for expand, cout, n, kernel, stride in CFG:
            for i in range(n):
                layers.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = cin

    def forward(self, x):
        return self.features(x)
