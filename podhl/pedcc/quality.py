"""Quality of a centroid set: nearest-neighbour cosines (``pedcc_quality``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _nearest_cos(u: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Each row's cosine to its nearest other row, in row chunks (no k×k matrix for large k)."""
    out = []
    for s in range(0, u.shape[0], chunk):
        g = u[s : s + chunk] @ u.t()
        rows = torch.arange(g.shape[0], device=u.device)
        g[rows, rows + s] = -3.0  # exclude self
        out.append(g.max(dim=1).values)
    return torch.cat(out)


@torch.no_grad()
def pedcc_quality(centroids: torch.Tensor) -> dict[str, float]:
    """Nearest-neighbour cosines of a centroid set, in float64: ``max_nn_cos`` (the closest pair),
    ``mean_nn_cos`` (mean over rows of the cosine to their nearest other row), ``min_angle_deg`` and,
    for reference, the simplex optimum −1/(k−1) (attainable only for k ≤ n+1; for k > n+1 some pair
    has cosine ≥ 0, Rankin 1955)."""
    u = F.normalize(centroids.double(), dim=1)
    cos = _nearest_cos(u)
    max_cos = float(cos.max())
    return {
        "max_nn_cos": max_cos,
        "mean_nn_cos": float(cos.mean()),
        "min_angle_deg": math.degrees(math.acos(max(-1.0, min(1.0, max_cos)))),
        "simplex_bound": -1.0 / (u.shape[0] - 1),
    }
