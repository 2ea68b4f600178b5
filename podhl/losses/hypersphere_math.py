"""Hypersphere Loss (HL, Wang et al., IEEE TII 2024) — pure math, no state (re-exported by ``hypersphere``).

Equation numbers are the HL paper's. Everything is vectorized over classes with ``index_add_`` via
:func:`podhl.losses.centers.class_sums` or per-class (C, d) algebra: no loop over classes and no
B×C×d tensor, so C = 10,575 (CASIA-WebFace) is cheap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy.special import betainc, betaincinv

from podhl.losses.centers import class_sums

__all__ = [
    "cap_area_fraction",
    "feature_sphere_radius",
    "generalized_center_penalty",
    "class_center_separation",
    "ewma_center_update",
    "ewma_center_update_from_sums",
    "closed_form_centers",
    "pairwise_cosine_stats",
]


def cap_area_fraction(theta: float, dim: int) -> float:
    """Fraction of the area of the sphere S^{dim-1} covered by a cap of half-angle ``theta``.

    ½·I_{sin²θ}((d−1)/2, ½) for θ ≤ π/2 (regularized incomplete beta), 1 − that of π − θ above.
    """
    if dim < 2:
        raise ValueError(f"dim must be ≥ 2, got {dim}")
    if not 0.0 <= theta <= math.pi:
        raise ValueError(f"theta must be in [0, π], got {theta}")
    if theta > math.pi / 2:
        return 1.0 - cap_area_fraction(math.pi - theta, dim)
    return 0.5 * float(betainc((dim - 1) / 2.0, 0.5, math.sin(theta) ** 2))


def feature_sphere_radius(num_classes: int, dim: int, r: float) -> float:
    """Radius a of the feature hyperspheres (HL §III-A): a = r·sin θ_C, where a cap of half-angle θ_C
    covers 1/C of the radius-r sphere in R^dim, i.e. ½·I_{sin²θ_C}((d−1)/2, ½) = 1/C.

    C = 10, d = 512 gives a ≈ 0.99839·r.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be ≥ 2, got {num_classes}")
    if dim < 2:
        raise ValueError(f"dim must be ≥ 2 for the feature-sphere radius, got {dim}")
    if r <= 0:
        raise ValueError(f"r must be > 0, got {r}")
    sin2 = float(betaincinv((dim - 1) / 2.0, 0.5, 2.0 / num_classes))
    return float(r) * math.sqrt(min(max(sin2, 0.0), 1.0))


def generalized_center_penalty(
    features: torch.Tensor,
    labels: torch.Tensor,
    centers: torch.Tensor,
    threshold: float,
    power: int = 2,
    normalization: str = "batch",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generalized center penalty (eq. 17 without λ): (1/(2B))·Σ_i [ι(d_i)·d_i]², d_i = ‖f_i − c_{y_i}‖,
    ι = 0 inside the dead zone d < ``threshold`` (= ε·a), 1 outside (eq. 11).

    ``power=4`` and ``normalization="elements"`` (divide by 2·B·d) are the authors' code (switches);
    ``valid`` (B,) bool zeroes samples whose center is not initialized yet.
    Computed from d² (no square root), so the gradient is defined at d = 0.
    """
    if power not in (2, 4):
        raise ValueError(f"power must be 2 or 4, got {power}")
    if normalization not in ("batch", "elements"):
        raise ValueError(f"normalization must be 'batch' or 'elements', got {normalization!r}")
    d2 = (features - centers[labels]).pow(2).sum(dim=1)
    iota = d2 >= float(threshold) ** 2
    if valid is not None:
        iota = iota & valid
    term = d2 if power == 2 else d2 * d2
    denom = 2 * features.shape[0] * (features.shape[1] if normalization == "elements" else 1)
    return torch.where(iota, term, torch.zeros_like(term)).sum() / denom


def class_center_separation(labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Class center separation (eq. 10 without β): (1/(B(C−1)))·Σ_i Σ_{l≠y_i} c_{y_i}ᵀc_l.

    Uses Σ_{l≠k} c_l = T − c_k with T = Σ_l c_l (O(C·d)).
    """
    num_classes = centers.shape[0]
    total = centers.sum(dim=0)
    per_class = centers @ total - centers.pow(2).sum(dim=1)  # c_kᵀ(T − c_k), (C,)
    return per_class[labels].sum() / (labels.numel() * (num_classes - 1))


def ewma_center_update_from_sums(
    centers: torch.Tensor,
    sums: torch.Tensor,
    counts: torch.Tensor,
    phi: float,
    beta: float,
    radius: float,
    step: int,
    bias_correction: bool = True,
) -> torch.Tensor:
    """Eq. 15–16 from per-class feature sums S_k and counts n_k (what DDP reduces):

    Σ_{i:y_i=k} (v_i − β/(C−1)·Σ_{l≠k} c_l) = (φ·n_k·c_k + (1−φ)·S_k)/(1 − φ^{N_c}) − n_k·β/(C−1)·(T − c_k),
    c_k = r·normalize(·). A class with n_k = 0 (or a zero sum) keeps its center. ``step`` = N_c ≥ 1.
    """
    if step < 1:
        raise ValueError(f"step (N_c) must be ≥ 1, got {step}")
    num_classes = centers.shape[0]
    scale = 1.0 / (1.0 - phi**step) if bias_correction else 1.0
    n = counts.to(centers.dtype).unsqueeze(1)
    others = centers.sum(dim=0, keepdim=True) - centers  # Σ_{l≠k} c_l, (C, d)
    u = (phi * n * centers + (1.0 - phi) * sums) * scale - n * (beta / (num_classes - 1)) * others
    return _renormalize(centers, u, counts, radius)


def ewma_center_update(
    centers: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
    phi: float,
    beta: float,
    radius: float,
    step: int,
    bias_correction: bool = True,
) -> torch.Tensor:
    """Per-mini-batch center update (eq. 15–16) returning the new centers; ``step`` = N_c (1 at the
    first update, when centers are zero: the update is r·normalize(class sum))."""
    sums, counts = class_sums(features.to(centers.dtype), labels, centers.shape[0])
    return ewma_center_update_from_sums(centers, sums, counts, phi, beta, radius, step, bias_correction)


def closed_form_centers(
    centers: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, beta: float, radius: float
) -> torch.Tensor:
    """Whole-training-set update (eq. 13; eq. 9 when β = 0): c_k = r·normalize(S_k − n_k·β/(C−1)·(T − c_k)),
    S_k, n_k over the samples with δ(k, y_i) = 1 (eq. 14). A class with no such sample keeps its center."""
    num_classes = centers.shape[0]
    others = centers.sum(dim=0, keepdim=True) - centers
    u = sums - counts.to(centers.dtype).unsqueeze(1) * (beta / (num_classes - 1)) * others
    return _renormalize(centers, u, counts, radius)


def _renormalize(centers: torch.Tensor, u: torch.Tensor, counts: torch.Tensor, radius: float) -> torch.Tensor:
    norm = u.norm(dim=1, keepdim=True)
    keep = (counts == 0).unsqueeze(1) | (norm == 0)
    new = radius * u / norm.clamp_min(torch.finfo(u.dtype).tiny)
    return torch.where(keep, centers, new)


def pairwise_cosine_stats(centers: torch.Tensor, chunk: int = 1024) -> tuple[float, float]:
    """Mean and max cosine over the pairs k < l of nonzero centers (mean in closed form, max by row
    chunks: memory O(chunk·C), never C×C at once)."""
    c = centers[centers.norm(dim=1) > 0].float()
    m = c.shape[0]
    if m < 2:
        return float("nan"), float("nan")
    u = F.normalize(c, dim=1)
    mean = (u.double().sum(0).pow(2).sum() - m) / (m * (m - 1))
    best = -math.inf
    for start in range(0, m, chunk):  # loop over row blocks, not classes
        g = u[start : start + chunk] @ u.t()
        rows = torch.arange(start, min(start + chunk, m), device=u.device)
        g[torch.arange(len(rows), device=u.device), rows] = -math.inf
        best = max(best, float(g.max()))
    return float(mean), best
