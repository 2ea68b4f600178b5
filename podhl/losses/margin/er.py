"""ER: RegularFace's exclusive regularization on the classifier weights.

Zhao, Xu & Cheng, CVPR 2019 (equation numbers not checked: the paper's text was not available
here): L = L_s + λ·L_r(W), L_r(W) = (1/C)·Σ_i max_{j≠i} cos(W_i, W_j), the mean cosine between
each class weight and its nearest other class (gradients reach both W_i and its neighbour, as in
the paper). L_s is the combined-margin head of ``cm.py``; its defaults are the authors' reference
``ExclusiveLinear`` (normalized features and weights, radius s = 20, no margin); margins (``m1``,
``m2``, ``m3``) give the paper's "SphereFace/CosFace/ArcFace + ER" variants. λ = 1: neither the HL
paper nor the reference code fixes it (1 is pytorch-metric-learning's default regularizer weight);
tune it with ``loss.lam``. Terms: ``ce``, ``exclusive`` (L_r, unweighted).
"""

from __future__ import annotations

import torch

from podhl.checks import in_range
from podhl.losses.margin.cm import CombinedMarginLoss
from podhl.losses.margin.math import exclusive_regularizer


class ExclusiveRegularizationLoss(CombinedMarginLoss):
    def __init__(self, num_classes: int, feat_dim: int, lam: float = 1.0, scale: float = 20.0, m1: float = 1.0,
                 m2: float = 0.0, m3: float = 0.0) -> None:
        super().__init__(num_classes, feat_dim, scale=scale, m1=m1, m2=m2, m3=m3)
        self.lam = in_range("lam", lam, 0.0)  # λ

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        ce = self.margin_ce(features, labels)
        exclusive = exclusive_regularizer(self.weight)
        return {"loss": ce + self.lam * exclusive, "ce": ce, "exclusive": exclusive}
