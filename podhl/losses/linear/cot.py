"""Complement Objective Training, COT (Chen et al., ICLR 2019, eq. 2; POD paper ref. [14], Table 4):
``COTLoss``, two optimizer steps per batch as in the official code (henry8527/COT ``code/main.py``:
``optimizer`` then ``complement_optimizer``, same hyperparameters). The official loss
Σ_{j≠g} P log P / (N·K) equals −C with ``normalize_by=k`` (checked in the tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import one_of
from podhl.losses.linear.head import LinearClassifier
from podhl.losses.linear.math import COT_NORMALIZATIONS, complement_entropy


class COTLoss(LinearClassifier):
    r"""COT: alternate a cross-entropy step and a step maximizing the complement entropy (COT eq. 2).

    Two optimizer steps per batch, each with its own optimizer state (``separate_step_optimizers``):
    step 0 minimizes $\mathrm{CE}(W x + b)$; step 1, on a second forward of the same batch,
    minimizes $-C$ with

    $$C = \frac{1}{N}\sum_i \frac{H(\hat y_{i,\bar c})}{K - 1}, \qquad
    H(\hat y_{i,\bar c}) = -\sum_{j \ne g} \frac{\hat y_{ij}}{1 - \hat y_{ig}}
    \log\frac{\hat y_{ij}}{1 - \hat y_{ig}}$$

    the complement entropy (Chen, Wang, Liu, Chang, Pan, Chen, Wei & Juan, ICLR 2019, eq. 2), so
    the non-target probabilities flatten (maximum $\log(K-1)/(K-1)$ at uniform). Evaluation
    (step 0) reports cross-entropy. Config: ``loss=cot``.

    Args:
        num_classes: $K$, number of classes (rows of $W$).
        feat_dim: $d$, feature dimension.
        normalize_by: ``"k_minus_1"`` (default, COT eq. 2: $K - 1$ complement classes) or ``"k"``
            (henry8527/COT ``code/COT.py`` @12a3f61, ``loss /= classes``).
        bias: whether the classifier has the bias $b$. Default True (henry8527/COT
            ``code/models/PreActResNet.py`` @9667d0b, ``nn.Linear`` with bias).

    Returns:
        forward (dict[str, torch.Tensor]): step 0: ``loss`` = ``ce``; step 1: ``loss`` $= -C$ and
            ``complement`` ($C$, positive).
        logits (torch.Tensor): $(B, K)$ scores $W x + b$; argmax = prediction.
    """

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
