"""AM-Softmax / CosFace: additive cosine margin, target logit s·(cos θ_y − m).

AM-Softmax (Wang, Cheng, Liu & Liu, IEEE SPL 2018, ψ(θ) = cos θ − m; s = 30, m = 0.35, the POD
paper's Table 4 baseline) and CosFace's LMCL (Wang et al., CVPR 2018, eq. 4; same formula with
s = 64: ``loss.scale=64``). No angle is needed, so there is no fallback region. Terms: ``ce``.
"""

from __future__ import annotations

import torch

from podhl.checks import in_range
from podhl.losses.margin.head import MarginHead


class AMSoftmaxLoss(MarginHead):
    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, margin: float = 0.35) -> None:
        super().__init__(num_classes, feat_dim, scale=scale)
        self.margin = in_range("margin", margin, 0.0, 2.0, high_open=True)  # m, a cosine

    def target(self, cos_y: torch.Tensor) -> torch.Tensor:
        return cos_y - self.margin  # cos θ_y − m

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin:g}"
