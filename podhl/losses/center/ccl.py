"""Constrained center loss, CCL (Shi, Wang & Leung, "Constrained Center Loss for Convolutional Neural
Networks", IEEE TNNLS 2021; HL paper Sec. II-C, eqs. 7–9):

    min  CE(W f) + λ/(2N)·Σ_i ‖f_i − c_{y_i}‖²    s.t. ‖c_k‖ = r,

solved alternately: with the network fixed, c_k = r·m_k/‖m_k‖ where m_k is the mean feature of class
k over the WHOLE training set (eq. 9); with the centers fixed, SGD on the objective. Here the center
step runs between epochs (``feature_pass`` over the train set, the HL paper's Table V row 1 setting
"per epoch using all training set"); under DDP the per-class sums are all-reduced.

Before the first pass there are no centers (the trainer offers no feature pass before epoch 1), so
epoch 1 trains the softmax alone (``ccl`` logs 0) and the penalty starts once the first epoch's pass
has set the centers (``initialized`` buffer; checkpoints carry it and the centers).

Defaults: r = 40 (the radius this project's baseline spec fixes for CCL); λ = 0.002 — the HL
paper's tuned weight (Sec. IV-B, Table II) of the same λ/(2N)·Σ‖f − c‖² penalty; the CCL paper's own
per-dataset λ was not available to us, so set ``loss.lam`` to match it. No classifier bias (eq. 7).
Terms: ``ce``, ``ccl`` (the unweighted ½·mean ‖f − c_y‖²).
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from podhl.checks import in_range
from podhl.distributed import all_reduce_sum
from podhl.losses.center.math import center_penalty, class_sums, constrained_centers
from podhl.losses.linear.head import LinearClassifier


class ConstrainedCenterLoss(LinearClassifier):
    needs_feature_pass = True

    def __init__(
        self, num_classes: int, feat_dim: int, lam: float = 0.002, radius: float = 40.0, bias: bool = False
    ) -> None:
        super().__init__(num_classes, feat_dim, bias)
        self.lam = in_range("lam", lam, 0.0)  # λ, weight of the center term
        self.radius = in_range("radius", radius, 0.0, low_open=True)  # r, norm of every class center
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        features = features.float()
        ce = F.cross_entropy(self.classifier(features), labels)
        if bool(self.initialized):
            penalty = center_penalty(features, self.centers, labels)
        else:
            penalty = features.new_zeros(())
        return {"loss": ce + self.lam * penalty, "ce": ce, "ccl": penalty}

    @torch.no_grad()
    def feature_pass(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> None:
        sums = torch.zeros(self.num_classes, self.feat_dim, dtype=torch.float64, device=self.centers.device)
        counts = torch.zeros(self.num_classes, dtype=torch.float64, device=self.centers.device)
        for features, labels in batches:
            s, n = class_sums(features.to(torch.float64), labels, self.num_classes)
            sums += s
            counts += n
        all_reduce_sum(sums)
        all_reduce_sum(counts)
        self.centers.copy_(constrained_centers(sums, counts, self.radius, self.centers.double()))
        self.initialized.fill_(True)

    def epoch_metrics(self) -> dict[str, float]:
        return {"center_norm": float(self.centers.norm(dim=1).mean())}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lam={self.lam}, radius={self.radius}"
