"""The 20-layer SphereFace network (Liu et al., CVPR 2017, "SpherefaceNet-20"; HL §IV-G's face backbone).

Topology of the official Caffe prototxt (wy1iu/sphereface ``train/code/sphereface_model.prototxt``):
four stages, each a 3×3 stride-2 convolution (64, 128, 256, 512 channels) + PReLU followed by
1, 2, 4, 1 residual units; a unit is conv3×3 → PReLU → conv3×3 → PReLU added to its input (no
BatchNorm, no pooling, nothing after the sum). 4 + 2·8 = 20 convolutions. The network's FC5 (the
512-d face embedding) is podhl's FC1 (:class:`podhl.models.feature_net.FeatureNet`, width
``model.feat_dim``): this module returns the flattened last feature map, 512·7·6 = 21,504 values for
112×96 inputs and 512·7·7 = 25,088 for 112×112 (each stride-2 conv maps a side n to ⌈n/2⌉).

Initialisation (``caffe_init=true``, the prototxt's fillers): stride-2 convolutions Caffe "xavier"
= U(±√(3/fan_in)) (``kaiming_uniform_(a=1)``), bias 0; residual convolutions N(0, 0.01) and no
bias (the prototxt freezes their biases at 0 with ``lr_mult: 0``); PReLU per channel, slope 0.25
(Caffe's default, = ``nn.PReLU(C)``). ``caffe_init=false`` keeps PyTorch's defaults and biases
everywhere, as the PyTorch port clcarwin/sphereface_pytorch ``sphere20a`` does. FC5 (podhl's FC1)
keeps ``nn.Linear``'s default initialisation in both cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

WIDTHS = (64, 128, 256, 512)


class _Unit(nn.Module):
    """x + PReLU(conv(PReLU(conv(x))))."""

    def __init__(self, channels: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=bias)
        self.act1 = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=bias)
        self.act2 = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act2(self.conv2(self.act1(self.conv1(x))))


def output_side(side: int, stages: int = 4) -> int:
    """Side length after ``stages`` 3×3 stride-2 pad-1 convolutions (⌈n/2⌉ each)."""
    for _ in range(stages):
        side = (side - 1) // 2 + 1
    return side


class SphereFace(nn.Module):
    """Images (B, C, H, W) → flattened last feature map (B, 512·⌈H/16⌉·⌈W/16⌉); ``num_features`` is that width.

    ``layers`` = residual units per stage: (1, 2, 4, 1) is SphereFace-20 (the default), (3, 8, 16, 3) SphereFace-64.
    """

    def __init__(
        self,
        in_chans: int = 3,
        img_size: int | Sequence[int] = (112, 96),
        layers: Sequence[int] = (1, 2, 4, 1),
        caffe_init: bool = True,
    ) -> None:
        super().__init__()
        h, w = (img_size, img_size) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))
        if len(layers) != 4:
            raise ValueError(f"layers must give the residual units of 4 stages, got {list(layers)}")
        stages, cin = [], in_chans
        for cout, units in zip(WIDTHS, layers, strict=True):
            stages.append(
                nn.Sequential(
                    nn.Conv2d(cin, cout, 3, 2, 1),
                    nn.PReLU(cout),
                    *(_Unit(cout, bias=not caffe_init) for _ in range(int(units))),
                )
            )
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.img_size = (h, w)
        self.num_features = WIDTHS[-1] * output_side(h) * output_side(w)
        if caffe_init:
            for stage in self.stages:
                nn.init.kaiming_uniform_(stage[0].weight, a=1.0)  # Caffe xavier (FAN_IN): U(±√(3/fan_in))
                nn.init.zeros_(stage[0].bias)
                for unit in list(stage)[2:]:
                    nn.init.normal_(unit.conv1.weight, 0.0, 0.01)
                    nn.init.normal_(unit.conv2.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x).flatten(1)
