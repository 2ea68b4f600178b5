"""MML: combined angular and cosine margin, target logit s·(cos(θ_y + m_a) − m_c).

The HL paper's "multimargin loss" [32] is Li et al.'s AMCM-Softmax (Neural Comput. Appl. 34, 2022):
an additive angular margin and an additive cosine margin on a normalized classifier. Li et al.'s
tuned margins are not available to us, so the defaults are the ArcFace paper's Table 2 "CM1"
(m1, m2, m3) = (1, 0.3, 0.2) (Deng et al., CVPR 2019, eq. 4), s = 30 (scale note in ``head.py``).
Past θ_y = π − m_a the target logit follows the continuous, monotone fallback
cos θ_y − (1 + cos(π − m_a)) − m_c (:func:`podhl.losses.margin.math.monotone_fallback`). Terms: ``ce``.
"""

from __future__ import annotations

import math

import torch

from podhl.checks import in_range
from podhl.losses.margin.head import MarginHead
from podhl.losses.margin.math import angle, monotone_fallback


class MultiMarginLoss(MarginHead):
    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, angular_margin: float = 0.3,
                 cosine_margin: float = 0.2) -> None:
        super().__init__(num_classes, feat_dim, scale=scale)
        self.angular_margin = in_range("angular_margin", angular_margin, 0.0, math.pi, high_open=True)  # m_a
        self.cosine_margin = in_range("cosine_margin", cosine_margin, 0.0, 2.0, high_open=True)  # m_c

    def target(self, cos_y: torch.Tensor) -> torch.Tensor:
        phi = angle(cos_y) + self.angular_margin  # θ_y + m_a
        return monotone_fallback(torch.cos(phi) - self.cosine_margin, cos_y, phi,
                                 m2=self.angular_margin, m3=self.cosine_margin)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, angular_margin={self.angular_margin:g}, cosine_margin={self.cosine_margin:g}"
