"""ArcFace: additive angular margin, target logit s·cos(θ_y + m).

Deng, Guo, Xue & Zafeiriou, CVPR 2019, eq. 3; m = 0.5 (the paper's value, used by POD Table 4 and
HL Table VI). s = 30, not the paper's 64: see the scale note in ``margin_head.py``. The combined
margin with m1 = 1, m2 = m, m3 = 0; past θ_y = π − m the target logit follows the continuous,
monotone fallback of :func:`podhl.losses.functional.margin_logits` (cos θ_y − (1 − cos m)).
"""

from __future__ import annotations

import math

from podhl.losses.margin_head import MarginHead, check_range


class ArcFaceLoss(MarginHead):
    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, margin: float = 0.5) -> None:
        margin = check_range("margin", margin, 0.0, math.pi, high_open=True)
        super().__init__(num_classes, feat_dim, scale=scale, m1=1.0, m2=margin, m3=0.0)
