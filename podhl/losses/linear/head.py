"""The linear classifier W x + b shared by softmax, COT, HML and the center-type losses (center, CCL, HL)."""

from __future__ import annotations

import torch
from torch import nn

from podhl.checks import one_of
from podhl.losses.base import Criterion


class LinearClassifier(Criterion):
    """Owns ``classifier`` = ``nn.Linear(feat_dim, num_classes, bias)``; ``logits`` = W x + b on fp32 features."""

    def __init__(self, num_classes: int, feat_dim: int, bias: bool = True) -> None:
        super().__init__(num_classes, feat_dim)
        self.classifier = nn.Linear(feat_dim, num_classes, bias=one_of("bias", bias, (True, False)))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.float())
