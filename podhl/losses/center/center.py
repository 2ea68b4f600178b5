"""Center loss (Wen, Zhang, Li & Qiao, "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016, eq. 2/4/5; HL eq. 3): ``CenterLoss``, centers updated by the paper's rule.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from podhl.checks import in_range
from podhl.losses.center.math import center_penalty, center_update_from_sums
from podhl.losses.center.rows import class_slot_stats, write_rows
from podhl.losses.linear.head import LinearClassifier


class CenterLoss(LinearClassifier):
    r"""Center loss: softmax plus $\lambda$ times the distance of each feature to its class center.

    $$L = \mathrm{CE}(W x + b) + \lambda L_C, \qquad
    L_C = \frac{1}{2N}\sum_i \lVert x_i - c_{y_i}\rVert^2$$

    (Wen et al., ECCV 2016, eq. 2/5; HL eq. 3). The centers are a buffer, never touched by the
    (weight-decayed, momentum) optimizer: after every optimizer step, from that step's batch,

    $$\Delta c_j = \frac{\sum_{y_i = j}(c_j - x_i)}{1 + n_j}, \qquad c_j \leftarrow c_j - \alpha\,\Delta c_j$$

    (eq. 4, Algorithm 1; summed over ranks under DDP), for the classes in the batch only (the others
    have $n_j = 0$: unchanged), so the update costs O(B·d) (``podhl.losses.center.rows``). They start
    from a Xavier-uniform draw (the official Caffe prototxt's ``center_filler { type: "xavier" }``).
    Config: ``loss=center``.

    Args:
        num_classes: $C$, number of classes (rows of $W$ and of the centers).
        feat_dim: $d$, feature dimension.
        lam: $\lambda \ge 0$, weight of $L_C$ (unitless). Default 0.003: Wen et al. §4 (their face
            experiments).
        alpha: $\alpha \in (0, 1]$, center update rate (per optimizer step). Default 0.5: Wen et al. §4.
        bias: whether the classifier has the bias $b$. Default True (Wen et al. eq. 2).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated), ``ce`` and ``center``
            ($L_C$, unweighted).
        logits (torch.Tensor): $(B, C)$ scores $W x + b$; argmax = prediction.
    """

    def __init__(
        self, num_classes: int, feat_dim: int, lam: float = 0.003, alpha: float = 0.5, bias: bool = True
    ) -> None:
        super().__init__(num_classes, feat_dim, bias)
        self.lam = in_range("lam", lam, 0.0)  # λ, weight of the center term
        self.alpha = in_range("alpha", alpha, 0.0, 1.0, low_open=True)  # α, center learning rate
        centers = torch.empty(num_classes, feat_dim)
        nn.init.xavier_uniform_(centers)
        self.register_buffer("centers", centers)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        features = features.float()
        ce = F.cross_entropy(self.classifier(features), labels)
        center = center_penalty(features, self.centers, labels)
        return {"loss": ce + self.lam * center, "ce": ce, "center": center}

    @torch.no_grad()
    def after_optimizer_step(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> None:
        slots = class_slot_stats(features.float(), labels, self.num_classes)  # DDP: the global batch's classes
        rows = self.centers[slots.rows]  # only the classes in the batch change: O(B·d), not O(C·d)
        write_rows(self.centers, slots, center_update_from_sums(rows, slots.sums, slots.counts, self.alpha))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lam={self.lam}, alpha={self.alpha}"
