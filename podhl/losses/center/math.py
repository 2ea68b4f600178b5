"""Center-type math (center loss, CCL; shared with HL): pure functions on tensors, no state.

Everything is vectorized over classes with ``index_add_`` (:func:`class_sums`) or per-class (C, d)
algebra: no loop over classes and no B×C×d tensor. Every function computes in the dtype it is given
(the losses pass fp32; tests pass float64 for gradcheck).
"""

from __future__ import annotations

import torch

__all__ = ["class_sums", "center_penalty", "center_update_from_sums", "sphere_centers", "constrained_centers"]


def class_sums(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class feature sums (C, d) and counts (C,) via ``index_add_`` (no loop, no B×C×d tensor)."""
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.zeros(num_classes, dtype=features.dtype, device=features.device)
    counts.index_add_(0, labels, torch.ones_like(labels, dtype=features.dtype))  # (bincount syncs on CUDA)
    return sums, counts


def center_penalty(features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """½·mean_i ‖x_i − c_{y_i}‖² (Wen et al. 2016 eq. 2 with the 1/m of their Caffe code; HL eq. 2/7)."""
    return 0.5 * (features - centers[labels]).pow(2).sum(dim=1).mean()


def center_update_from_sums(centers: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """Wen et al. 2016 eq. 4 + Algorithm 1 from per-class sums S_j and counts n_j (summed over DDP ranks):

        Δc_j = Σ_{y_i=j} (c_j − x_i) / (1 + n_j) = (n_j·c_j − S_j) / (1 + n_j),     c_j ← c_j − α·Δc_j.

    Returns the new centers (C, d); classes absent from the batch (n_j = 0) are unchanged.
    """
    delta = (counts[:, None] * centers - sums) / (1.0 + counts[:, None])
    return centers - alpha * delta


def sphere_centers(
    directions: torch.Tensor, counts: torch.Tensor, radius: float, previous: torch.Tensor, eps: float = 0.0
) -> torch.Tensor:
    """c_k = r·u_k/‖u_k‖: put each class's direction u_k on the radius-r sphere (the constraint ‖c_k‖ = r of
    CCL, HL eq. 7–10). A class with no sample (n_k = 0) or with ‖u_k‖ ≤ ``eps`` keeps ``previous``.
    Shared by CCL (eq. 9) and HL (eq. 13, 16)."""
    norms = directions.norm(dim=1, keepdim=True)
    valid = (counts > 0)[:, None] & (norms > eps)
    floor = eps if eps > 0 else torch.finfo(directions.dtype).tiny
    new = radius * directions / norms.clamp_min(floor)
    return torch.where(valid, new.to(previous.dtype), previous)


def constrained_centers(
    sums: torch.Tensor, counts: torch.Tensor, radius: float, previous: torch.Tensor, eps: float = 1e-12
) -> torch.Tensor:
    """CCL (Shi, Wang & Leung, TNNLS 2021; HL paper eq. 9): c_k = r·m_k/‖m_k‖ with m_k the class mean.

    ``sums``/``counts`` are per-class feature sums and counts over the whole training set (the mean's
    direction is the sum's). Classes with no sample, or a zero mean, keep ``previous``.
    """
    return sphere_centers(sums, counts, radius, previous, eps)
