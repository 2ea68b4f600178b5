"""Softmax loss (POD eq. 1; HL eq. 1): a linear classifier and cross-entropy on fp32 logits. Terms: ``ce``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.losses.linear.head import LinearClassifier


class SoftmaxLoss(LinearClassifier):
    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(self.logits(features), labels)
        return {"loss": ce, "ce": ce}
