"""CM: combined margin, target logit s·(cos(m1·θ_y + m2) − m3).

ArcFace paper (Deng et al., CVPR 2019, eq. 4, Table 2 "CM2"): multiplicative angular m1 = 0.9,
additive angular m2 = 0.4, additive cosine m3 = 0.15 — the POD paper's Table 4 setting. s = 30
(scale note in ``margin_head.py``; the ArcFace paper uses 64). Unlike insightface's PyTorch
``CombinedMarginLoss`` (which drops m1, m2 when m3 > 0), all three margins apply; past
θ_y = (π − m2)/m1 the target logit follows the continuous, monotone fallback of
:func:`podhl.losses.functional.margin_logits`.
"""

from __future__ import annotations

from podhl.losses.margin_head import MarginHead


class CombinedMarginLoss(MarginHead):
    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, m1: float = 0.9, m2: float = 0.4,
                 m3: float = 0.15) -> None:
        super().__init__(num_classes, feat_dim, scale=scale, m1=m1, m2=m2, m3=m3)
