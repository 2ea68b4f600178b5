"""Linear-classifier cross-entropy variants (COT, HML): pure functions on logits, no state.

Every function computes in the dtype it is given (the losses pass fp32; tests pass float64 for gradcheck).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import one_of

__all__ = ["COT_NORMALIZATIONS", "complement_entropy", "hard_mining_loss"]

COT_NORMALIZATIONS = ("k_minus_1", "k")


def complement_entropy(logits: torch.Tensor, labels: torch.Tensor, normalize_by: str = "k_minus_1") -> torch.Tensor:
    r"""Complement entropy (Chen et al., COT, ICLR 2019, eq. 2): $\frac{1}{N}\sum_i H(\hat y_{i,\bar c})/\mathrm{norm}$.

    $\hat y_{ij}/(1 - \hat y_{ig})$ for $j \ne g$ is exactly the softmax of the logits with the target
    masked out, so it is computed as that (log-sum-exp stable, no $\varepsilon$). $H$ is maximal,
    $\log(K-1)$, when the non-target probabilities are uniform. COT's second step minimizes
    $-C$ (the official code's loss, $\sum P\log P/(NK)$).

    Args:
        logits: $(B, K)$ logits.
        labels: $(B,)$ class indices $g$.
        normalize_by: ``"k_minus_1"`` (default, the paper's $K - 1$) or ``"k"`` (the official code,
            henry8527/COT ``code/COT.py``).

    Returns:
        The scalar $C \ge 0$ (nats).
    """
    num_classes = logits.shape[1]
    norm = num_classes - 1 if one_of("normalize_by", normalize_by, COT_NORMALIZATIONS) == "k_minus_1" else num_classes
    target = F.one_hot(labels, num_classes).bool()
    log_p = torch.log_softmax(logits.masked_fill(target, float("-inf")), dim=1)
    p = log_p.exp()  # exactly 0 at the target
    entropy = -(p * log_p.masked_fill(target, 0.0)).sum(dim=1)
    return entropy.mean() / norm


def hard_mining_loss(logits: torch.Tensor, labels: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    r"""Hard-mining loss $\frac{1}{N}\sum_i (-\log p_{i,y_i})^R$: podhl's reconstruction of Srivastava, Murali &
    Dubey (CVIP 2020), no equation number (the paper's was not available; ``podhl.losses.linear.hml``).

    Raising each sample's loss to $R > 1$ increases it where it exceeds 1 (hard samples, $p < 1/e$) and
    decreases it below (easy samples); $R = 1$ is plain cross-entropy.

    Args:
        logits: $(B, C)$ logits.
        labels: $(B,)$ class indices.
        power: $R \ge 1$. Default 2 (podhl's choice).

    Returns:
        The scalar loss.
    """
    ce = F.cross_entropy(logits, labels, reduction="none")
    return ce.pow(power).mean()
