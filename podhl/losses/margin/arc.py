"""ArcFace: additive angular margin, target logit s·cos(θ_y + m).

Deng, Guo, Xue & Zafeiriou, CVPR 2019, eq. 3; m = 0.5 (the paper's value, used by POD Table 4 and
HL Table VI). s = 30, not the paper's 64: see the scale note in ``head.py``. Past θ_y = π − m, where
θ_y + m would leave [0, π], the target logit follows the continuous, monotone fallback
cos θ_y − (1 + cos(π − m)) = cos θ_y − (1 − cos m) (:func:`podhl.losses.margin.math.monotone_fallback`).
Terms: ``ce``.
"""

from __future__ import annotations

import math

import torch

from podhl.checks import in_range
from podhl.losses.margin.head import MarginHead
from podhl.losses.margin.math import angle, monotone_fallback


class ArcFaceLoss(MarginHead):
    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, margin: float = 0.5) -> None:
        super().__init__(num_classes, feat_dim, scale=scale)
        self.margin = in_range("margin", margin, 0.0, math.pi, high_open=True)  # m, radians

    def target(self, cos_y: torch.Tensor) -> torch.Tensor:
        phi = angle(cos_y) + self.margin  # θ_y + m
        return monotone_fallback(torch.cos(phi), cos_y, phi, m2=self.margin)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin:g}"
