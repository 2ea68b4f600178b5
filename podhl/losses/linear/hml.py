"""Hard-mining loss, HML (Srivastava, Murali & Dubey, "Hard-Mining Loss based Convolutional Neural
Network for Face Recognition", CVIP 2020, arXiv:1908.09747; HL paper ref. [31], Tables IV, VI–VII;
no equation number is cited: the paper's text was not available here).

The hard-mining loss raises each sample's loss to a power R so that hard samples (loss > 1) weigh
more and easy ones (loss < 1) less; on the softmax cross-entropy (the variant the HL paper compares:
its Table IV gives HML the softmax classifier's parameters and FLOPs):

    L_HM = (1/N)·Σ_i (−log p_{i,y_i})^R,     p = softmax(W x + b).

Constants and their sources: R = 2 (``power``) is our reading of the paper's setting — the paper's
full text was not available in this environment, so the form above is reconstructed from its
stated definition ("increasing the loss for harder examples and decreasing the loss for easy
examples", generic over the base loss) and should be checked against the paper; R = 1 recovers
cross-entropy. The linear classifier with bias matches ``softmax``. Terms: ``ce`` (plain mean
cross-entropy, for reference; not optimized) and ``hm`` (L_HM, the optimized loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import in_range
from podhl.losses.linear.head import LinearClassifier
from podhl.losses.linear.math import hard_mining_loss


class HardMiningLoss(LinearClassifier):
    def __init__(self, num_classes: int, feat_dim: int, power: float = 2.0, bias: bool = True) -> None:
        super().__init__(num_classes, feat_dim, bias)
        self.power = in_range("power", power, 1.0)  # R ≥ 1

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        logits = self.logits(features)
        hm = hard_mining_loss(logits, labels, self.power)
        with torch.no_grad():
            ce = F.cross_entropy(logits, labels)
        return {"loss": hm, "ce": ce, "hm": hm}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, power={self.power}"
