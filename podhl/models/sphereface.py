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


# ---------------------------------------------------------------------- the HL authors' BatchNorm variant
class _BNUnit(nn.Module):
    """The HL authors' ``BasicBlock``: PReLU(BN(conv(PReLU(BN(conv(x))))) + BN(conv1×1(x))), one PReLU used twice."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.PReLU(channels)  # their name; applied after bn1 and after the sum (shared weights)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = nn.Sequential(nn.Conv2d(channels, channels, 1, 1, bias=False), nn.BatchNorm2d(channels))
        for conv in (self.conv1, self.conv2, self.downsample[0]):
            nn.init.normal_(conv.weight, 0.0, 0.01)  # their conv3x3 / conv1x1
        nn.init.zeros_(self.bn2.weight)  # their BasicBlock: bn2.weight = 0 (the residual branch starts silent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + self.downsample(x))


class SphereFaceBN(nn.Module):
    """SphereFace-20 as the HL authors wrote it (TCCofWANG/Hypersphere_loss ``models/spherenet.py`` @ b1b98187,
    the file's newest commit; repository @ 87301dfd): each stage a 3×3 stride-2 convolution (no bias) → BatchNorm →
    PReLU, then 1, 2, 4, 1 residual units that all have a 1×1 convolution + BatchNorm shortcut (although no unit
    changes width or stride) and end in a PReLU after the sum; FC5 = Linear → BatchNorm1d → PReLU.

    Images (B, C, H, W) → flattened last feature map (B, 512·⌈H/16⌉·⌈W/16⌉), as :class:`SphereFace`; the FC5 block
    is podhl's FC1 (:meth:`embedding_head`, used by :class:`~podhl.models.feature_net.FeatureNet`). Their file
    hard-codes 512·7·6 (112×96 inputs); here the width follows the input size.

    Initialisation, theirs: stride-2 convolutions Xavier-uniform (their ``for m in self.children()`` loop),
    residual and shortcut convolutions N(0, 0.01), BatchNorm weight 1 / bias 0 except each unit's second
    BatchNorm, weight 0. FC5's Linear keeps PyTorch's default: their loop's Xavier branch never reaches it (it sits
    inside an ``nn.Sequential``, and ``children()`` does not descend).
    """

    def __init__(
        self, in_chans: int = 3, img_size: int | Sequence[int] = (112, 96), layers: Sequence[int] = (1, 2, 4, 1)
    ) -> None:
        super().__init__()
        h, w = (img_size, img_size) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))
        if len(layers) != 4:
            raise ValueError(f"layers must give the residual units of 4 stages, got {list(layers)}")
        cin = in_chans
        for i, cout in enumerate(WIDTHS, 1):  # registered in their order: conv1, bn1, prelu1, conv2, ...
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, 3, 2, 1, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(cout))
            setattr(self, f"prelu{i}", nn.PReLU(cout))
            cin = cout
        for i, (cout, units) in enumerate(zip(WIDTHS, layers, strict=True), 1):
            setattr(self, f"layer{i}", nn.Sequential(*(_BNUnit(cout) for _ in range(int(units)))))
        for i in range(1, 5):
            nn.init.xavier_uniform_(getattr(self, f"conv{i}").weight)
        self.img_size = (h, w)
        self.num_features = WIDTHS[-1] * output_side(h) * output_side(w)

    @staticmethod
    def embedding_head(width: int, feat_dim: int) -> nn.Module:
        """Their ``fc5``: Linear(width, d) → BatchNorm1d(d) → PReLU(d) (podhl's FC1 for this backbone)."""
        return nn.Sequential(nn.Linear(width, feat_dim), nn.BatchNorm1d(feat_dim), nn.PReLU(feat_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 5):
            x = getattr(self, f"prelu{i}")(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            x = getattr(self, f"layer{i}")(x)
        return x.flatten(1)
