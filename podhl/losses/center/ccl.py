"""Constrained center loss, CCL (Shi, Wang & Leung, "Constrained Center Loss for Convolutional Neural
Networks", IEEE TNNLS 34(2):1080–1088, DOI 10.1109/TNNLS.2021.3104392; HL paper ref. [12], §II-C,
eqs. 7–9):

    min  CE(W f) + λ/(2N)·Σ_i ‖f_i − c_{y_i}‖²    s.t. ‖c_k‖ = r,

solved alternately: with the network fixed, c_k = r·m_k/‖m_k‖ where m_k is the mean feature of class
k (HL eq. 9, the Lagrange solution); with the centers fixed, SGD on the objective.

What could be checked: the form above as the HL paper restates it (§II-C, eqs. 7–9), r = 40 (HL §IV-A:
"According to the setting in [12], we let r = 40"), and the abstracts of the TNNLS paper ("update the
cluster centers based on an analytical formula, which can be implemented based on the minibatch
concept. We then fix the cluster centers and update the connection weights for a number of SGD
minibatch iterations") and of its ICONIP 2020 precursor ("we propose to use the entire training set
to approximate class centers"). The TNNLS full text, its λ and its center-update period were not
available here.

What is assumed (podhl's choices):

* the center step runs once per epoch over the WHOLE training set (``feature_pass``, model in eval
  mode, no augmentation): the ICONIP abstract's "entire training set" and the HL paper's Table V row 1
  ("per epoch using all training set"); the TNNLS version may update more often, from mini-batches;
* λ = 0.002, the HL paper's tuned weight (§IV-B, Table II) of the same λ/(2N)·Σ‖f − c‖² penalty, for
  comparability with HL; CCL's own λ may differ (``loss.lam``);
* no classifier bias (HL eq. 7 has none).

Before the first pass there are no centers (the trainer offers no feature pass before epoch 1), so
epoch 1 trains the softmax alone (``ccl`` logs 0) and the penalty starts once the first epoch's pass
has set the centers (``initialized`` buffer; checkpoints carry it and the centers). Under DDP the
per-class sums are all-reduced. Terms: ``ce``, ``ccl`` (the unweighted ½·mean ‖f − c_y‖²).
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
