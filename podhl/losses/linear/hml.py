"""Hard-mining loss, HML (Srivastava, Murali & Dubey, CVIP 2020, arXiv:1908.09747; HL paper ref. [31],
Tables IV, VI, VII): ``HardMiningLoss``, podhl's reconstruction (no equation of the paper was
available).

What could be checked. The paper's text beyond its abstract and introduction was not available here
(searched: arXiv/ar5iv 1908.09747, the Springer chapter, paperswithcode — "no code implementations" —
and public code for the title and the arXiv number); the HL paper gives no formula and no
hyperparameter for HML. The abstract defines the idea only: "increasing the loss for harder examples
and decreasing the loss for easy examples", "generic", tested "with Cross-Entropy, Angular-Softmax and
ArcFace". HL Table IV gives HML the softmax's extra parameters (100 K) and FLOPs (50.00 M), so the HL
comparison ran HML on the plain linear-softmax classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import in_range
from podhl.losses.linear.head import LinearClassifier
from podhl.losses.linear.math import hard_mining_loss


class HardMiningLoss(LinearClassifier):
    r"""Hard-mining loss: a per-sample power $R$ of the cross-entropy (podhl's reconstruction).

    $$L_{HM} = \frac{1}{N}\sum_i \big(-\log p_{i,y_i}\big)^R, \qquad p = \mathrm{softmax}(W x + b)$$

    **No equation number**: the HML paper's equation was not available (Srivastava, Murali & Dubey,
    CVIP 2020; module docstring), so this form is podhl's reading of its abstract ("increasing the
    loss for harder examples and decreasing the loss for easy examples"): a sample with loss > 1
    ($p_y < 1/e$, hard) is weighted up, one below 1 (easy) down; $R = 1$ is cross-entropy. Check it
    against the paper before using HML numbers in a comparison. Config: ``loss=hml``.

    Args:
        num_classes: $C$, number of classes (rows of $W$).
        feat_dim: $d$, feature dimension.
        power: $R \ge 1$ (unitless exponent). Default 2: podhl's choice, the smallest integer
            $R > 1$ (the paper's $R$ is not known here).
        bias: whether the classifier has the bias $b$. Default True (HL Table IV gives HML the
            softmax's parameters).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` = ``hm`` ($L_{HM}$, back-propagated) and ``ce``
            (plain mean cross-entropy, for reference, not optimized).
        logits (torch.Tensor): $(B, C)$ scores $W x + b$; argmax = prediction.
    """

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
