"""ER: RegularFace's exclusive regularization on the classifier weights.

Zhao, Xu & Cheng, CVPR 2019 (equation numbers not checked: the paper's text was not available
here; the formula is the one on the first author's project page, kaizhao.net/regularface):
L = L_s + λ·L_r(W), L_r(W) = (1/C)·Σ_i max_{j≠i} cos(W_i, W_j), the mean cosine between each class
weight and its nearest other class. As in the first author's ``ExclusiveLinear`` (zeakey/face2019
``pytorch/ops.py``, unchanged since c71a9fa), the neighbour is chosen without gradient and the
gradient of each selected cosine reaches both W_i and its neighbour; the search runs in row blocks
(:func:`podhl.losses.margin.math.nearest_other_rows`), so no C×C matrix is kept for autograd.

L_s is the combined-margin head of ``cm.py``; by default the ``ExclusiveLinear`` head: features and
weights normalized, logits s·cos θ_j, no margin. Margins (``m1``, ``m2``, ``m3``) give the paper's
"SphereFace/CosFace/ArcFace + ER" variants.

Defaults and their sources (zeakey/face2019, the RegularFace author's training code; the paper's own
values were not available here):

* s = 15: ``--radius`` default 15 of ``pytorch/train_center_exclusive.py`` (added in f001c43, still
  15 at its last change d3b9ea2) and of ``pytorch/train_center_exclusive_filter.py`` @600cf6e, the
  newest RegularFace script, both passed as ``CenterExclusive(..., radius=args.radius)``.
  (``ExclusiveLinear``'s own default is radius=10 since c71a9fa, 32 before; the project page's demo
  shows 20; the HL paper §IV-A sets r = 40 for "the comparison methods that utilize this
  hyperparameter": ``loss.scale=40``.)
* λ = 6: ``--exclusive_weight`` default of ``train_center_exclusive.py`` @d3b9ea2 (it was 2 in
  dedb565, 10 in 270c71b) and of ``train_center_exclusive_filter.py`` @600cf6e; other scripts of the
  repository use 10 or 15.

Terms: ``ce``, ``exclusive`` (L_r, unweighted).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import in_range
from podhl.losses.margin.cm import CombinedMarginLoss
from podhl.losses.margin.math import exclusive_regularizer_of_unit_rows, fp32


class ExclusiveRegularizationLoss(CombinedMarginLoss):
    def __init__(self, num_classes: int, feat_dim: int, lam: float = 6.0, scale: float = 15.0, m1: float = 1.0,
                 m2: float = 0.0, m3: float = 0.0) -> None:
        super().__init__(num_classes, feat_dim, scale=scale, m1=m1, m2=m2, m3=m3)
        self.lam = in_range("lam", lam, 0.0)  # λ

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        x = F.normalize(fp32(features), dim=1)
        w = F.normalize(fp32(self.weight), dim=1).to(x.dtype)  # normalized once for both terms
        ce = F.cross_entropy(self.margin_logits(x @ w.t(), labels), labels)  # = self.margin_ce(features, labels)
        exclusive = exclusive_regularizer_of_unit_rows(w)
        return {"loss": ce + self.lam * exclusive, "ce": ce, "exclusive": exclusive}
