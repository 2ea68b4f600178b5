"""MML: combined angular and cosine margin, target logit s·(cos(θ_y + m_a) − m_c).

The HL paper's "multimargin loss (MML)" [32] is J. Li et al., "Combined angular margin and cosine
margin softmax loss for music classification based on spectrograms", Neural Comput. Appl. 34(13),
10337–10353, 2022 (AMCM-Softmax). What could be checked: only its abstract (weights and features
normalized; "an angular margin parameter and a cosine margin parameter are introduced ... enforcing
angular and cosine margin constraints"); the full text, the equation and its s and margins were not
available here, and the HL paper gives none (HL Table IV: 200 K extra parameters, 101.28 M FLOPs,
like its ArcFace and CosFace rows).

What is assumed (podhl's choices, each to be checked against Li et al.):

* the form: an *additive* angular margin and an additive cosine margin on the target,
  s·(cos(θ_y + m_a) − m_c) — the ArcFace paper's combined margin (Deng et al., CVPR 2019, eq. 4) with
  m1 = 1. A later paper of the same group (MTAP 2023) calls its loss "additive angular margin and cosine margin"
  (AACM-Softmax), which may mean AMCM's angular margin is multiplicative, cos(m_a·θ_y) − m_c: that
  variant is ``loss=cm loss.m2=0`` with m1 = m_a;
* the margins: the ArcFace paper's Table 2 "CM1" (m1, m2, m3) = (1, 0.3, 0.2), i.e. m_a = 0.3,
  m_c = 0.2;
* s = 30 (scale note in ``head.py``).

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
