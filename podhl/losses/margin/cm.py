"""CM, combined margin (ArcFace paper, Deng et al., CVPR 2019, eq. 4, Table 2 "CM2"; POD Table 4):
``CombinedMarginLoss``, the head ``er.py`` builds on."""

from __future__ import annotations

import math

import torch

from podhl.checks import in_range
from podhl.losses.margin.head import MarginHead
from podhl.losses.margin.math import angle, monotone_fallback


class CombinedMarginLoss(MarginHead):
    r"""Combined margin: multiplicative and additive angular, and additive cosine (ArcFace paper eq. 4).

    $$L = \mathrm{CE}\big(s\cdot[\cos\theta_j\ (j \ne y);\ \cos(m_1\theta_y + m_2) - m_3\ (j = y)],\ y\big)$$

    (Deng et al., CVPR 2019, eq. 4; Table 2 "CM2" is the POD paper's Table 4 setting). Unlike
    insightface's PyTorch ``CombinedMarginLoss`` (which drops $m_1, m_2$ when $m_3 > 0$), all three
    margins apply. Past $\theta_y = \theta^* = (\pi - m_2)/m_1$ the target logit follows the
    continuous, monotone fallback $\cos\theta_y - (1 + \cos\theta^*) - m_3$
    (``podhl.losses.margin.math.monotone_fallback``). Config: ``loss=cm``.

    Args:
        num_classes: $C$, number of classes (rows of $W$, $C \times d$).
        feat_dim: $d$, feature dimension.
        scale: $s > 0$, scale of the logits. Default 30: podhl's choice, AM-Softmax's value (neither
            POD nor HL states $s$; the ArcFace paper uses 64), see ``podhl.losses.margin.head``.
        m1: $m_1 > 0$, multiplicative angular margin (unitless factor on $\theta_y$). Default 0.9:
            POD Table 4 "CM (m1 = 0.9, m2 = 0.4, m3 = 0.15)", from ArcFace Table 2 CM2.
        m2: $m_2 \in [0, \pi)$, additive angular margin in radians. Default 0.4 (same sources).
        m3: $m_3 \in [0, 2)$, additive margin on the cosine (unitless). Default 0.15 (same sources).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated) and ``ce``, the same
            cross-entropy with the margins.
        logits (torch.Tensor): $(B, C)$ scores $s\cos\theta_j$ without margin; argmax = prediction.
    """

    def __init__(
        self, num_classes: int, feat_dim: int, scale: float = 30.0, m1: float = 0.9, m2: float = 0.4, m3: float = 0.15
    ) -> None:
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
