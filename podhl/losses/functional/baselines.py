"""Functional forms: baselines (see the family's loss modules for equations).

Pure math on tensors (no modules, no state), testable on tiny inputs. Every function computes in
the dtype it is given (the losses pass fp32; tests pass float64 for gradcheck).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.losses.centers import class_sums

__all__: list[str] = []

# --------------------------------------------------------------------------- center / CCL
__all__ += ["center_penalty", "center_update", "center_update_from_sums", "constrained_centers"]


def center_penalty(features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """½·mean_i ‖x_i − c_{y_i}‖² (Wen et al. 2016 eq. 2 with the 1/m of their Caffe code; HL eq. 2/7)."""
    return 0.5 * (features - centers[labels]).pow(2).sum(dim=1).mean()


def center_update(centers: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    """Wen et al. 2016 eq. 4 + Algorithm 1: Δc_j = Σ_{y_i=j}(c_j − x_i) / (1 + n_j), c_j ← c_j − α·Δc_j.

    Returns the new centers (C, d); classes absent from the batch (n_j = 0) are unchanged.
    """
    sums, counts = class_sums(features.to(centers.dtype), labels, centers.shape[0])
    return center_update_from_sums(centers, sums, counts, alpha)


def center_update_from_sums(centers: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """:func:`center_update` from per-class sums/counts (summed over DDP ranks: the global batch's rule)."""
    delta = (counts[:, None] * centers - sums) / (1.0 + counts[:, None])
    return centers - alpha * delta


def constrained_centers(
    sums: torch.Tensor, counts: torch.Tensor, radius: float, previous: torch.Tensor, eps: float = 1e-12
) -> torch.Tensor:
    """CCL (Shi, Wang & Leung, TNNLS 2021; HL paper eq. 9): c_k = r·m_k/‖m_k‖ with m_k the class mean.

    ``sums``/``counts`` are per-class feature sums and counts over the whole training set (the mean's
    direction is the sum's). Classes with no sample, or a zero mean, keep ``previous``.
    """
    norms = sums.norm(dim=1, keepdim=True)
    valid = (counts > 0)[:, None] & (norms > eps)
    new = radius * sums / norms.clamp_min(eps)
    return torch.where(valid, new.to(previous.dtype), previous)


# --------------------------------------------------------------------------- COT
__all__ += ["complement_entropy"]


def complement_entropy(logits: torch.Tensor, labels: torch.Tensor, normalize_by: str = "k_minus_1") -> torch.Tensor:
    """Complement entropy (Chen et al., COT, ICLR 2019, eq. 2): mean_i H(ŷ_{i,c̄}) / norm.

    ŷ_{ij}/(1 − ŷ_{ig}) for j ≠ g is exactly the softmax of the logits with the target masked out, so
    it is computed as that (log-sum-exp stable, no ε). H = −Σ_{j≠g} P_j log P_j is maximal, log(K−1),
    when the non-target probabilities are uniform. ``normalize_by``: ``k_minus_1`` divides by K − 1
    (the paper's normalization), ``k`` by K (the official code, henry8527/COT ``code/COT.py``).
    COT's second step minimizes −complement_entropy (the official code's loss, Σ P log P / (N·K)).
    """
    num_classes = logits.shape[1]
    if normalize_by == "k_minus_1":
        norm = num_classes - 1
    elif normalize_by == "k":
        norm = num_classes
    else:
        raise ValueError(f"normalize_by must be 'k_minus_1' or 'k', got {normalize_by!r}")
    target = F.one_hot(labels, num_classes).bool()
    log_p = torch.log_softmax(logits.masked_fill(target, float("-inf")), dim=1)
    p = log_p.exp()  # exactly 0 at the target
    entropy = -(p * log_p.masked_fill(target, 0.0)).sum(dim=1)
    return entropy.mean() / norm


# --------------------------------------------------------------------------- HML
__all__ += ["hard_mining_loss"]


def hard_mining_loss(logits: torch.Tensor, labels: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    """Hard-mining loss on cross-entropy (Srivastava, Murali & Dubey, CVIP 2020): mean_i (−log p_{i,y_i})^R.

    Raising each sample's loss to R > 1 increases it where it exceeds 1 (hard samples, p < 1/e) and
    decreases it below (easy samples); R = 1 is plain cross-entropy.
    """
    ce = F.cross_entropy(logits, labels, reduction="none")
    return ce.pow(power).mean()
