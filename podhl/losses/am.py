"""AM-Softmax / CosFace: additive cosine margin, target logit s·(cos θ_y − m).

AM-Softmax (Wang, Cheng, Liu & Liu, IEEE SPL 2018, ψ(θ) = cos θ − m; s = 30, m = 0.35, the POD paper's
Table 4 baseline) and CosFace's LMCL (Wang et al., CVPR 2018, eq. 4; same formula with s = 64:
``loss.scale=64``). The combined margin with m1 = 1, m2 = 0, m3 = m (no angle, no fallback).
"""

from __future__ import annotations

from podhl.losses.margin_head import MarginHead, check_range


class AMSoftmaxLoss(MarginHead):
    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, margin: float = 0.35) -> None:
        margin = check_range("margin", margin, 0.0, 2.0, high_open=True)
        super().__init__(num_classes, feat_dim, scale=scale, m1=1.0, m2=0.0, m3=margin)
