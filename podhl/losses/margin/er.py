"""ER: RegularFace's exclusive regularization on the classifier weights (Zhao, Xu & Cheng, CVPR 2019;
equation numbers not checked), ``ExclusiveRegularizationLoss``.

Implementation: as in the first author's ``ExclusiveLinear`` (zeakey/face2019 ``pytorch/ops.py``,
unchanged since c71a9fa), the neighbour is chosen without gradient and the gradient of each selected
cosine reaches both W_i and its neighbour; the search runs in row blocks
(``podhl.losses.margin.math.nearest_other_rows``), so no C×C matrix is kept for autograd.
Other values of the defaults in that repository: ``ExclusiveLinear``'s own radius default is 10 since
c71a9fa (32 before), the project page's demo shows 20; ``--exclusive_weight`` was 2 in dedb565 and 10
in 270c71b, and other scripts of the repository use 10 or 15.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import in_range
from podhl.losses.margin.cm import CombinedMarginLoss
from podhl.losses.margin.math import exclusive_regularizer_of_unit_rows, fp32, nearest_other_rows


class ExclusiveRegularizationLoss(CombinedMarginLoss):
    r"""RegularFace: a margin head plus the exclusive regularizer of its class weights.

    $$L = L_s + \lambda\, L_r(W), \qquad L_r(W) = \frac{1}{C}\sum_i \max_{j \ne i} \cos(W_i, W_j)$$

    the mean cosine between each class weight and its nearest other class (Zhao, Xu & Cheng,
    CVPR 2019; no equation number: the paper's text was not available here, the formula is the one
    on the first author's project page, kaizhao.net/regularface). $L_s$ is the combined-margin head of
    ``podhl.losses.margin.cm.CombinedMarginLoss``, by default without margin (logits
    $s\cos\theta_j$, as the author's ``ExclusiveLinear``); margins give the paper's
    "SphereFace/CosFace/ArcFace + ER" variants. Config: ``loss=er``. The defaults are from
    zeakey/face2019, the RegularFace author's training code (the paper's own values were not available).

    Args:
        num_classes: $C$, number of classes (rows of $W$, $C \times d$).
        feat_dim: $d$, feature dimension.
        lam: $\lambda \ge 0$, weight of $L_r$. Default 6: ``--exclusive_weight`` of
            ``pytorch/train_center_exclusive.py`` @d3b9ea2 and ``train_center_exclusive_filter.py`` @600cf6e.
        scale: $s > 0$, scale of the logits. Default 15: ``--radius`` of the same scripts (HL §IV-A
            sets $r = 40$ for the comparison methods: ``loss.scale=40``).
        m1: $m_1 > 0$, multiplicative angular margin. Default 1 (none, as ``ExclusiveLinear``).
        m2: $m_2 \in [0, \pi)$, additive angular margin in radians. Default 0 (none).
        m3: $m_3 \in [0, 2)$, additive margin on the cosine. Default 0 (none).
        refresh_every: search each class's nearest other class every N training steps and keep the
            pairs in between (the value is then the mean cosine to the kept neighbours, $\le L_r$). The
            search is $O(C^2 d)$ (~277 s a step at C = 100,000, d = 512 on one CPU thread); everything
            else is $O(C d)$. Default 1: every step, as ``ExclusiveLinear``; our choice for C ≳ 20,000:
            e.g. 100 (docs/losses/margin.md "ER at face scale").

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` $= L_s + \lambda L_r$ (back-propagated), ``ce``
            ($L_s$) and ``exclusive`` ($L_r$, unweighted).
        logits (torch.Tensor): $(B, C)$ scores $s\cos\theta_j$ without margin; argmax = prediction.
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        lam: float = 6.0,
        scale: float = 15.0,
        m1: float = 1.0,
        m2: float = 0.0,
        m3: float = 0.0,
        refresh_every: int = 1,
    ) -> None:
        super().__init__(num_classes, feat_dim, scale=scale, m1=m1, m2=m2, m3=m3)
        self.lam = in_range("lam", lam, 0.0)  # λ
        self.refresh_every = int(in_range("refresh_every", refresh_every, 1))
        # kept neighbours and the steps taken; saved in checkpoints only when they are used (resume stays exact,
        # checkpoints of refresh_every=1 runs keep their keys)
        kept = self.refresh_every > 1
        self.register_buffer("neighbour", torch.full((num_classes,), -1, dtype=torch.long), persistent=kept)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long), persistent=kept)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        ce = self.margin_ce(features, labels)  # lean path: W normalized inside, no (C, d) copy kept
        w = F.normalize(fp32(self.weight), dim=1).to(fp32(features).dtype)  # the regularizer's unit rows
        exclusive = exclusive_regularizer_of_unit_rows(w, neighbour=self._neighbours(w))
        return {"loss": ce + self.lam * exclusive, "ce": ce, "exclusive": exclusive}

    @torch.no_grad()
    def _neighbours(self, w: torch.Tensor) -> torch.Tensor | None:
        """None (search now) with ``refresh_every`` = 1; else the kept neighbours, searched again every
        ``refresh_every`` training forward calls (evaluation reuses them; one host sync a call)."""
        if self.refresh_every == 1:
            return None
        if int(self.neighbour[0]) < 0 or (self.training and int(self.steps) % self.refresh_every == 0):
            self.neighbour.copy_(nearest_other_rows(w))
        if self.training:
            self.steps += 1
        return self.neighbour
