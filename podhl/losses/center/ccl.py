"""Constrained center loss, CCL (Shi, Wang & Leung, "Constrained Center Loss for Convolutional Neural
Networks", IEEE TNNLS 34(2):1080–1088, DOI 10.1109/TNNLS.2021.3104392; HL paper ref. [12], §II-C,
eqs. 7–9): ``ConstrainedCenterLoss``.

What could be checked: the form as the HL paper restates it (§II-C, eqs. 7–9), r = 40 (HL §IV-A:
"According to the setting in [12], we let r = 40"), and the abstracts of the TNNLS paper ("update the
cluster centers based on an analytical formula, which can be implemented based on the minibatch
concept. We then fix the cluster centers and update the connection weights for a number of SGD
minibatch iterations") and of its ICONIP 2020 precursor ("we propose to use the entire training set
to approximate class centers"). The TNNLS full text, its λ and its center-update period were not
available here.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from podhl.checks import in_range
from podhl.distributed import all_reduce_sum
from podhl.losses.center.math import add_class_sums, center_penalty, constrained_centers
from podhl.losses.linear.head import LinearClassifier


class ConstrainedCenterLoss(LinearClassifier):
    r"""Constrained center loss: center loss with the centers on a radius-$r$ sphere, set in closed form.

    $$\min\ \mathrm{CE}(W f) + \frac{\lambda}{2N}\sum_i \lVert f_i - c_{y_i}\rVert^2
    \quad \text{s.t.}\ \lVert c_k\rVert = r$$

    (Shi, Wang & Leung, TNNLS 2021, as the HL paper restates it: §II-C, eq. 7–9), solved alternately:
    with the network fixed, $c_k = r\, m_k/\lVert m_k\rVert$, $m_k$ the mean feature of class $k$
    (HL eq. 9); with the centers fixed, SGD on the objective. podhl's assumptions (module
    docstring): the center step runs once per epoch over the **whole training set** (``feature_pass``:
    eval mode, no augmentation; HL Table V row 1), so epoch 1 trains the softmax alone (``ccl`` logs 0)
    until the first pass has set the centers (``initialized`` buffer). Config: ``loss=ccl``.

    Args:
        num_classes: $C$, number of classes (rows of $W$ and of the centers).
        feat_dim: $d$, feature dimension.
        lam: $\lambda \ge 0$, weight of the center term (unitless). Default 0.002: podhl's choice, HL's
            tuned $\lambda$ for the same penalty (HL §IV-B, Table II); CCL's own is not known here.
        radius: $r > 0$, norm of every class center (feature-norm units). Default 40: HL §IV-A
            ("according to the setting in [12], we let r = 40").
        bias: whether the classifier has a bias. Default False (HL eq. 7 has none).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated), ``ce`` and ``ccl`` (the
            unweighted $\frac{1}{2N}\sum_i \lVert f_i - c_{y_i}\rVert^2$).
        logits (torch.Tensor): $(B, C)$ scores $W f (+ b)$; argmax = prediction.
    """

    needs_feature_pass = True
    warm_start_setting = "CCL's first epoch (no centers before the first feature pass)"

    @property
    def warm_start_epochs(self) -> int:
        return 1

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
        for features, labels in batches:  # accumulated in place: no (C, d) temporary per batch
            add_class_sums(sums, counts, features, labels)
        all_reduce_sum(sums)
        all_reduce_sum(counts)
        self.centers.copy_(constrained_centers(sums, counts, self.radius, self.centers))  # fp32 out
        self.initialized.fill_(True)

    def epoch_metrics(self) -> dict[str, float]:
        return {"center_norm": float(self.centers.norm(dim=1).mean())}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lam={self.lam}, radius={self.radius}"
