"""MML: combined angular and cosine margin, target logit s·(cos(θ_y + m_a) − m_c).

The HL paper's "multimargin loss" [32] is Li et al.'s AMCM-Softmax (Neural Comput. Appl. 34, 2022):
an additive angular margin and an additive cosine margin on a normalized classifier, i.e. the
combined margin with m1 = 1. Li et al.'s tuned margins are not available to us, so the defaults are
the ArcFace paper's Table 2 "CM1" (m1, m2, m3) = (1, 0.3, 0.2) (Deng et al., CVPR 2019, eq. 4), s = 30
(scale note in ``margin_head.py``). Past θ_y = π − m_a the target logit follows the
continuous, monotone fallback of :func:`podhl.losses.functional.margin_logits`.
"""

from __future__ import annotations

import math

from podhl.losses.margin_head import MarginHead, check_range


class MultiMarginLoss(MarginHead):
    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, angular_margin: float = 0.3,
                 cosine_margin: float = 0.2) -> None:
        angular_margin = check_range("angular_margin", angular_margin, 0.0, math.pi, high_open=True)
        cosine_margin = check_range("cosine_margin", cosine_margin, 0.0, 2.0, high_open=True)
        super().__init__(num_classes, feat_dim, scale=scale, m1=1.0, m2=angular_margin, m3=cosine_margin)
