"""Complement Objective Training, COT (Chen, Wang, Liu, Chang, Pan, Chen, Wei & Juan, ICLR 2019;
POD paper ref. [14], Table 4). Two optimizer steps per batch, each with its own optimizer state
(``separate_step_optimizers``), as in the official code (henry8527/COT ``code/main.py``: ``optimizer``
then ``complement_optimizer``, same hyperparameters):

* step 0: cross-entropy CE(W x + b) (the "primary" objective);
* step 1: a second forward of the same batch and a step on −C, the negative complement entropy
  C = mean_i H(ŷ_{i,c̄}) / (K − 1) (paper eq. 2; H is the entropy of ŷ_{ij}/(1 − ŷ_{ig}), j ≠ g), i.e.
  the step MAXIMIZES C, flattening the non-target probabilities (maximum at uniform, C = log(K−1)/(K−1)).

``normalize_by``: ``k_minus_1`` (paper, default) or ``k`` (the official code's ``loss /= classes``).
The official loss Σ_{j≠g} P log P / (N·K) equals −C with ``normalize_by=k`` (checked in the tests).
Terms: step 0 ``ce``; step 1 ``complement`` (C itself, positive; the step's loss ``loss_step1`` = −C).
Evaluation (step 0) reports cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import one_of
from podhl.losses.linear.head import LinearClassifier
from podhl.losses.linear.math import COT_NORMALIZATIONS, complement_entropy


class COTLoss(LinearClassifier):
    steps_per_batch = 2
    separate_step_optimizers = True

    def __init__(self, num_classes: int, feat_dim: int, normalize_by: str = "k_minus_1", bias: bool = True) -> None:
        super().__init__(num_classes, feat_dim, bias)
        self.normalize_by = one_of("normalize_by", normalize_by, COT_NORMALIZATIONS)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        logits = self.logits(features)
        if step == 0:
            ce = F.cross_entropy(logits, labels)
            return {"loss": ce, "ce": ce}
        if step == 1:
            comp = complement_entropy(logits, labels, self.normalize_by)
            return {"loss": -comp, "complement": comp}
        raise ValueError(f"COT has steps 0 and 1, got step={step}")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, normalize_by={self.normalize_by}"
