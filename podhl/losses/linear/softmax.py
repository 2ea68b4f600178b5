"""Softmax loss (POD eq. 1; HL eq. 1): ``SoftmaxLoss``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.losses.linear.head import LinearClassifier


class SoftmaxLoss(LinearClassifier):
    r"""Softmax loss: a linear classifier and cross-entropy (POD eq. 1; HL eq. 1).

    $$L = \frac{1}{N}\sum_i -\log\frac{e^{z_{i,y_i}}}{\sum_j e^{z_{ij}}}, \qquad z_i = W x_i + b$$

    on fp32 logits. Config: ``loss=softmax``.

    Args:
        num_classes: $C$, number of classes (rows of $W$, $C \times d$).
        feat_dim: $d$, feature dimension.
        bias: whether the classifier has the bias $b$. Default True (POD eq. 1; HL eq. 1).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated) and ``ce``, the same value.
        logits (torch.Tensor): $(B, C)$ scores $W x + b$; argmax = prediction.
    """

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(self.logits(features), labels)
        return {"loss": ce, "ce": ce}
