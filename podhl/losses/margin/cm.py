"""CM: combined margin, target logit s·(cos(m1·θ_y + m2) − m3).

ArcFace paper (Deng et al., CVPR 2019, eq. 4, Table 2 "CM2"): multiplicative angular m1 = 0.9,
additive angular m2 = 0.4, additive cosine m3 = 0.15 — the POD paper's Table 4 setting. s = 30
(scale note in ``head.py``; the ArcFace paper uses 64). Unlike insightface's PyTorch
``CombinedMarginLoss`` (which drops m1, m2 when m3 > 0), all three margins apply; past
θ_y = (π − m2)/m1 the target logit follows the continuous, monotone fallback
cos θ_y − (1 + cos θ*) − m3 (:func:`podhl.losses.margin.math.monotone_fallback`). Terms: ``ce``.
"""

from __future__ import annotations

import math

import torch

from podhl.checks import in_range
from podhl.losses.margin.head import MarginHead
from podhl.losses.margin.math import angle, monotone_fallback


class CombinedMarginLoss(MarginHead):
    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, m1: float = 0.9, m2: float = 0.4,
                 m3: float = 0.15) -> None:
        super().__init__(num_classes, feat_dim, scale=scale)
        self.m1 = in_range("m1", m1, 0.0, low_open=True)  # multiplicative angular margin
        self.m2 = in_range("m2", m2, 0.0, math.pi, high_open=True)  # additive angular margin, radians
        self.m3 = in_range("m3", m3, 0.0, 2.0, high_open=True)  # additive cosine margin

    def target(self, cos_y: torch.Tensor) -> torch.Tensor:
        if self.m1 == 1.0 and self.m2 == 0.0:  # no angular margin (er's default head): cos θ_y − m3, no acos
            return cos_y - self.m3
        phi = self.m1 * angle(cos_y) + self.m2  # m1·θ_y + m2
        return monotone_fallback(torch.cos(phi) - self.m3, cos_y, phi, self.m1, self.m2, self.m3)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m1={self.m1:g}, m2={self.m2:g}, m3={self.m3:g}"
