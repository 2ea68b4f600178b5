"""Hypersphere Loss (HL, Wang et al., IEEE TII 2024): pure math, no state.

Equation numbers are the HL paper's. Everything is vectorized over classes, from per-class sums and
counts (:func:`podhl.losses.center.math.class_sums`, shared with center loss and CCL) or per-class
(C, d) algebra: no loop over classes and no B×C×d tensor, so C = 10,575 (CASIA-WebFace) is cheap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from podhl.checks import in_range, integer, one_of
from podhl.losses.center.math import sphere_centers

__all__ = [
    "PENALTY_POWERS",
    "PENALTY_NORMALIZATIONS",
    "feature_sphere_radius",
    "generalized_center_penalty",
    "class_center_separation",
    "ewma_center_update_from_sums",
    "closed_form_centers",
    "pairwise_cosine_stats",
]

PENALTY_POWERS = (2, 4)  # [ι·d]² (eq. 17) | d⁴ (the authors' code)
PENALTY_NORMALIZATIONS = ("batch", "elements")  # 1/(2B) (eq. 17) | 1/(2·B·d) (the authors' code)


def feature_sphere_radius(num_classes: int, dim: int, r: float) -> float:
    """Radius a of the feature hyperspheres (HL §III-A): a = r·sin θ_C, where a cap of half-angle θ_C
    covers 1/C of the radius-r sphere in R^dim, i.e. ½·I_{sin²θ_C}((d−1)/2, ½) = 1/C.

    C = 10, d = 512 gives a ≈ 0.99839·r.
    """
    integer("num_classes", num_classes, low=2)
    integer("dim", dim, low=2)  # a cap needs a sphere of dimension ≥ 1
    in_range("r", r, 0.0, low_open=True)
    from scipy.special import betaincinv  # here, not at import: runs without HL don't load scipy

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
    one_of("power", power, PENALTY_POWERS)
    one_of("normalization", normalization, PENALTY_NORMALIZATIONS)
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
    keep_absent: bool = True,
) -> torch.Tensor:
    """Eq. 15–16 from per-class feature sums S_k and counts n_k (what DDP reduces):

    Σ_{i:y_i=k} (v_i − β/(C−1)·Σ_{l≠k} c_l) = (φ·n_k·c_k + (1−φ)·S_k)/(1 − φ^{N_c}) − n_k·β/(C−1)·(T − c_k),
    c_k = r·normalize(·). A class with n_k = 0 (or a zero sum) keeps its center; ``keep_absent=False``
    sets it to zero instead, as the authors' code does (``get_center_momentum`` in
    ``Cifar10_HL_main.py`` @ba67071 sums into a zero tensor and ``renorm`` leaves a zero row at zero).
    ``step`` = N_c ≥ 1.
    """
    integer("step", step, low=1)  # N_c
    num_classes = centers.shape[0]
    scale = 1.0 / (1.0 - phi**step) if bias_correction else 1.0
    n = counts.to(centers.dtype).unsqueeze(1)
    others = centers.sum(dim=0, keepdim=True) - centers  # Σ_{l≠k} c_l, (C, d)
    u = (phi * n * centers + (1.0 - phi) * sums) * scale - n * (beta / (num_classes - 1)) * others
    return sphere_centers(u, counts, radius, centers if keep_absent else torch.zeros_like(centers))


def closed_form_centers(
    centers: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, beta: float, radius: float
) -> torch.Tensor:
    """Whole-training-set update (eq. 13; eq. 9 when β = 0): c_k = r·normalize(S_k − n_k·β/(C−1)·(T − c_k)),
    S_k, n_k over the samples with δ(k, y_i) = 1 (eq. 14). A class with no such sample keeps its center."""
    num_classes = centers.shape[0]
    others = centers.sum(dim=0, keepdim=True) - centers
    u = sums - counts.to(centers.dtype).unsqueeze(1) * (beta / (num_classes - 1)) * others
    return sphere_centers(u, counts, radius, centers)


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
