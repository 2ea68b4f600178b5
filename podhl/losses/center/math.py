"""Center-type math (center loss, CCL; shared with HL): pure functions on tensors, no state.

Everything is vectorized over classes with ``index_add_`` (``class_sums``) or per-class (C, d)
algebra: no loop over classes and no B×C×d tensor. Every function computes in the dtype it is given
(the losses pass fp32; tests pass float64 for gradcheck).
"""

from __future__ import annotations

import torch

__all__ = [
    "add_class_sums",
    "class_sums",
    "center_penalty",
    "center_update_from_sums",
    "sphere_centers",
    "constrained_centers",
]


def class_sums(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class feature sums and counts via ``index_add_`` (no loop, no B×C×d tensor; no equation).

    Args:
        features: $(B, d)$ features.
        labels: $(B,)$ class indices.
        num_classes: $C$.

    Returns:
        ``(sums, counts)``: $(C, d)$ and $(C,)$, in ``features``' dtype.
    """
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    counts = torch.zeros(num_classes, dtype=features.dtype, device=features.device)
    add_class_sums(sums, counts, features, labels)
    return sums, counts


def add_class_sums(sums: torch.Tensor, counts: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> None:
    """Add per-class feature sums and counts into ``sums`` $(C, d)$ and ``counts`` $(C,)$ in place
    (``index_add_``: O(B·d), no (C, d) temporary; features cast to ``sums``' dtype).

    Args:
        sums: $(C, d)$ running sums, updated in place.
        counts: $(C,)$ running counts, updated in place.
        features: $(B, d)$ features.
        labels: $(B,)$ class indices.

    Returns:
        None: ``sums`` and ``counts`` are updated in place.
    """
    sums.index_add_(0, labels, features.to(sums.dtype))
    counts.index_add_(0, labels, torch.ones_like(labels, dtype=counts.dtype))  # (bincount syncs on CUDA)


def center_penalty(features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Center penalty $\frac{1}{2N}\sum_i \lVert x_i - c_{y_i}\rVert^2$ (Wen et al., ECCV 2016, eq. 2 with the
    $1/m$ of their Caffe code; HL eq. 2/7).

    Args:
        features: $(B, d)$ features.
        centers: $(C, d)$ class centers.
        labels: $(B,)$ class indices.

    Returns:
        The scalar penalty (squared feature-norm units).
    """
    return 0.5 * (features - centers[labels]).pow(2).sum(dim=1).mean()


def center_update_from_sums(
    centers: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, alpha: float
) -> torch.Tensor:
    r"""Center loss's update (Wen et al., ECCV 2016, eq. 4 and Algorithm 1) from per-class sums and counts:

    $$\Delta c_j = \frac{\sum_{y_i = j}(c_j - x_i)}{1 + n_j} = \frac{n_j c_j - S_j}{1 + n_j}, \qquad
    c_j \leftarrow c_j - \alpha\,\Delta c_j$$

    Args:
        centers: $(C, d)$ current centers.
        sums: $(C, d)$ per-class feature sums $S_j$ (summed over DDP ranks).
        counts: $(C,)$ per-class counts $n_j$.
        alpha: $\alpha \in (0, 1]$, the update rate.

    Returns:
        $(C, d)$ new centers; classes absent from the batch ($n_j = 0$) are unchanged.
    """
    delta = (counts[:, None] * centers - sums) / (1.0 + counts[:, None])
    return centers - alpha * delta


def sphere_centers(
    directions: torch.Tensor, counts: torch.Tensor, radius: float, previous: torch.Tensor, eps: float = 0.0
) -> torch.Tensor:
    r"""$c_k = r\,u_k/\lVert u_k\rVert$: each class's direction on the radius-$r$ sphere (the constraint
    $\lVert c_k\rVert = r$ of CCL, HL eq. 7–10). Shared by CCL (eq. 9) and HL (eq. 13, 16).

    Args:
        directions: $(C, d)$ directions $u_k$.
        counts: $(C,)$ samples behind each direction.
        radius: $r > 0$ (feature-norm units).
        previous: $(C, d)$ centers kept where there is no update.
        eps: a direction with $\lVert u_k\rVert \le$ ``eps`` is no update. Default 0.

    Returns:
        $(C, d)$ centers in ``previous``' dtype; a class with $n_k = 0$ or a too short $u_k$ keeps ``previous``.
    """
    norms = directions.norm(dim=1, keepdim=True)
    valid = (counts > 0)[:, None] & (norms > eps)
    floor = eps if eps > 0 else torch.finfo(directions.dtype).tiny
    new = radius * directions / norms.clamp_min(floor)
    return torch.where(valid, new.to(previous.dtype), previous)


def constrained_centers(
    sums: torch.Tensor, counts: torch.Tensor, radius: float, previous: torch.Tensor, eps: float = 1e-12
) -> torch.Tensor:
    r"""CCL's centers (Shi, Wang & Leung, TNNLS 2021; HL eq. 9): $c_k = r\,m_k/\lVert m_k\rVert$, $m_k$ the
    class mean.

    Args:
        sums: $(C, d)$ per-class feature sums over the whole training set (the mean's direction is the sum's).
        counts: $(C,)$ per-class counts.
        radius: $r > 0$ (feature-norm units).
        previous: $(C, d)$ centers kept by classes with no sample or a zero mean.
        eps: a sum with norm $\le$ ``eps`` counts as zero. Default 1e-12.

    Returns:
        $(C, d)$ new centers.
    """
    return sphere_centers(sums, counts, radius, previous, eps)
