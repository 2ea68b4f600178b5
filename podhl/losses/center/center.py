"""Center loss (Wen, Zhang, Li & Qiao, "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016): softmax + λ·L_C with L_C = ½·mean_i ‖x_i − c_{y_i}‖² (their eq. 2/5; HL eq. 3).

Centers are a buffer updated after every optimizer step by the paper's rule (eq. 4, Algorithm 1),
never by the (weight-decayed, momentum) optimizer:

    Δc_j = Σ_{y_i=j} (c_j − x_i) / (1 + n_j),     c_j ← c_j − α·Δc_j

with the batch's features from the forward pass of that step (as in the official Caffe layer, whose
center update runs in the same backward pass).

Defaults: λ = 0.003 and α = 0.5, the values Wen et al. fix for their face-recognition experiments
(Sec. 4). Centers start from a Xavier-uniform draw (the official Caffe
prototxt's ``center_filler { type: "xavier" }``). Terms: ``ce``, ``center`` (L_C, unweighted).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from podhl.checks import in_range
from podhl.distributed import all_reduce_sum
from podhl.losses.center.math import center_penalty, center_update_from_sums, class_sums
from podhl.losses.linear.head import LinearClassifier


class CenterLoss(LinearClassifier):
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
        sums, counts = class_sums(features.float(), labels, self.num_classes)
        all_reduce_sum(sums), all_reduce_sum(counts)  # DDP: the update sees the global batch
        self.centers.copy_(center_update_from_sums(self.centers, sums, counts, self.alpha))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lam={self.lam}, alpha={self.alpha}"
