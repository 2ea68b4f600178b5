"""The linear classifier W x + b shared by softmax, COT, HML and the center-type losses (center, CCL, HL)."""

from __future__ import annotations

import torch
from torch import nn

from podhl.checks import one_of
from podhl.losses.base import Criterion


class LinearClassifier(Criterion):
    r"""Owns ``classifier`` = ``nn.Linear(feat_dim, num_classes, bias)``; ``logits`` = $W x + b$ on fp32 features.

    Args:
        num_classes: $C$, number of classes (rows of $W$).
        feat_dim: $d$, feature dimension.
        bias: whether the classifier has the bias $b$. Default True.
    """

    def __init__(self, num_classes: int, feat_dim: int, bias: bool = True) -> None:
        super().__init__(num_classes, feat_dim)
        self.classifier = nn.Linear(feat_dim, num_classes, bias=one_of("bias", bias, (True, False)))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        r"""$(B, C)$ scores $W x + b$ (fp32); argmax = prediction."""
        return self.classifier(features.float())
