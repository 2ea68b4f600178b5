"""MobileNet (v1; Howard et al. 2017) as in kuangliu/pytorch-cifar ``models/mobilenet.py``; 1024-d features."""

from __future__ import annotations

from torch import nn

CFG = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)


def _dw_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Depthwise 3×3 then pointwise 1×1, each with BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(True),
    )


class MobileNet(nn.Module):
    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        layers, cin = [nn.Conv2d(in_chans, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(True)], 32
        for c in CFG:
            cout, stride = (c, 1) if isinstance(c, int) else c
            layers.append(_dw_block(cin, cout, stride))
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = cin

    def forward(self, x):
        return self.features(x)
