"""Softmax loss (POD eq. 1): a linear classifier and cross-entropy on fp32 logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from podhl.losses.base import Criterion


class SoftmaxLoss(Criterion):
    def __init__(self, num_classes: int, feat_dim: int, bias: bool = True) -> None:
        super().__init__(num_classes, feat_dim)
        self.classifier = nn.Linear(feat_dim, num_classes, bias=bias)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.float())

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(self.logits(features), labels)
        return {"loss": ce, "ce": ce}
