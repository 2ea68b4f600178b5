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
    """Complement entropy (Chen et al., COT, ICLR 2019, eq. 2): mean_i H(ŷ_{i,c̄}) / norm.

    ŷ_{ij}/(1 − ŷ_{ig}) for j ≠ g is exactly the softmax of the logits with the target masked out, so
    it is computed as that (log-sum-exp stable, no ε). H = −Σ_{j≠g} P_j log P_j is maximal, log(K−1),
    when the non-target probabilities are uniform. ``normalize_by``: ``k_minus_1`` divides by K − 1
    (the paper's normalization), ``k`` by K (the official code, henry8527/COT ``code/COT.py``).
    COT's second step minimizes −complement_entropy (the official code's loss, Σ P log P / (N·K)).
    """
    num_classes = logits.shape[1]
    norm = num_classes - 1 if one_of("normalize_by", normalize_by, COT_NORMALIZATIONS) == "k_minus_1" else num_classes
    target = F.one_hot(labels, num_classes).bool()
    log_p = torch.log_softmax(logits.masked_fill(target, float("-inf")), dim=1)
    p = log_p.exp()  # exactly 0 at the target
    entropy = -(p * log_p.masked_fill(target, 0.0)).sum(dim=1)
    return entropy.mean() / norm


def hard_mining_loss(logits: torch.Tensor, labels: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    """Hard-mining loss on cross-entropy (Srivastava, Murali & Dubey, CVIP 2020): mean_i (−log p_{i,y_i})^R.

    Raising each sample's loss to R > 1 increases it where it exceeds 1 (hard samples, p < 1/e) and
    decreases it below (easy samples); R = 1 is plain cross-entropy.
    """
    ce = F.cross_entropy(logits, labels, reduction="none")
    return ce.pow(power).mean()
