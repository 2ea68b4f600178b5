"""Normalized-classifier margin math: clamped angle, monotone fallback, target scatter, SphereFace ψ(θ),
MagFace m(a)/g(a), RegularFace L_r. Pure functions, no state.

All functions compute in (at least) fp32, are out-of-place (exact autograd) and keep ``acos`` away
from ±1 by clamping the cosine to ±(1 − 1e-7), so gradients stay finite at cos = ±1.

Each margin head's own file computes its target logit (ArcFace: cos(θ_y + m); CM: cos(m1·θ_y + m2) − m3;
...) and uses :func:`angle` for θ_y and :func:`monotone_fallback` past the angle where its argument
m1·θ + m2 would leave [0, π] and cos would rise again. Past θ* = (π − m2)/m1 the target logit continues
as the **continuous CosFace-style extension**

    cos θ − (1 + cos θ*) − m3,     θ > θ*

which equals −1 − m3 at θ = θ* (continuity) and decreases with θ like cos θ (monotone), so the whole
target logit is continuous and strictly decreasing on [0, π]. (insightface's ``th/mm`` fallback
cos θ − m·sin m has the same slope but drops by cos m + m·sin m − 1 at θ* = π − m.)
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "COS_EPS",
    "fp32",
    "angle",
    "monotone_fallback",
    "scatter_target",
    "chebyshev_cos",
    "sphereface_psi",
    "sphereface_lambda",
    "magface_margin",
    "magface_g",
    "exclusive_regularizer",
]

COS_EPS = 1e-7  # acos never sees |cos| > 1 − COS_EPS


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)  # fp32, or fp64 for gradcheck


def fp32(t: torch.Tensor) -> torch.Tensor:
    """At least fp32 (fp16/bf16 → fp32; fp64 stays fp64 so gradcheck can run in double)."""
    return t.to(_work_dtype(t))


def angle(cos: torch.Tensor) -> torch.Tensor:
    """θ = acos(cos), the cosine clamped to ±(1 − 1e-7) first (finite gradients at cos = ±1)."""
    return torch.acos(cos.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))


def monotone_fallback(target: torch.Tensor, cos_y: torch.Tensor, phi: torch.Tensor, m1: float = 1.0,
                      m2: float | torch.Tensor = 0.0, m3: float = 0.0) -> torch.Tensor:
    """``target`` where the angle argument ``phi`` = m1·θ_y + m2 ≤ π, else cos θ_y − (1 + cos θ*) − m3 with
    θ* = (π − m2)/m1 (the continuous, decreasing extension above). ``m2`` may be a per-sample tensor."""
    m2 = torch.as_tensor(m2, dtype=cos_y.dtype, device=cos_y.device)
    theta_star = ((math.pi - m2) / m1).clamp(max=math.pi)
    outside = cos_y - (1.0 + torch.cos(theta_star)) - m3
    return torch.where(phi <= math.pi, target, outside)


def scatter_target(cosine: torch.Tensor, labels: torch.Tensor, target: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, C) logits s·cos θ_j off-target and s·``target`` (B,) on target, in ``cosine``'s dtype."""
    index = labels.view(-1, 1)
    return scale * cosine.scatter(1, index, target.unsqueeze(1).to(cosine.dtype))


# ---------------------------------------------------------------- SphereFace (A-Softmax)
def chebyshev_cos(cosine: torch.Tensor, m: int) -> torch.Tensor:
    """cos(m·θ) = T_m(cos θ) by the Chebyshev recurrence (a polynomial: smooth, no acos)."""
    prev, cur = torch.ones_like(cosine), cosine
    if m == 0:
        return prev
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cosine * cur - prev
    return cur


def sphereface_psi(cosine: torch.Tensor, m: int = 4) -> torch.Tensor:
    """ψ(θ) = (−1)^k cos(mθ) − 2k on [kπ/m, (k+1)π/m], k = 0..m−1 (SphereFace, CVPR 2017, §3.3).

    Continuous and decreasing on [0, π], ψ(π) = 1 − 2m. k is piecewise constant (no gradient).
    """
    cosine = cosine.to(_work_dtype(cosine)).clamp(-1.0, 1.0)
    with torch.no_grad():  # k is piecewise constant: no gradient through it
        theta = angle(cosine)
        k = torch.floor(m * theta / math.pi).clamp(0, m - 1)
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * chebyshev_cos(cosine, m) - 2.0 * k


def sphereface_lambda(iteration: int | float, base: float = 1000.0, gamma: float = 0.12, power: float = 1.0,
                      lambda_min: float = 5.0) -> float:
    """λ = max(λ_min, base·(1 + γ·it)^(−power)) (SphereFace Caffe ``margin_inner_product`` layer)."""
    return max(lambda_min, base * (1.0 + gamma * float(iteration)) ** (-power))


# ---------------------------------------------------------------- MagFace
def magface_margin(a: torch.Tensor, l_a: float = 10.0, u_a: float = 110.0, l_m: float = 0.45,
                   u_m: float = 0.8) -> torch.Tensor:
    """m(a) = (u_m − l_m)/(u_a − l_a)·(a − l_a) + l_m, increasing on [l_a, u_a] (MagFace §3.2)."""
    return (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m


def magface_g(a: torch.Tensor, u_a: float = 110.0) -> torch.Tensor:
    """g(a) = 1/a + a/u_a², convex with its minimum at a = u_a (MagFace §3.2, eq. 3 regularizer)."""
    return 1.0 / a + a / (u_a * u_a)


# ---------------------------------------------------------------- RegularFace
def exclusive_regularizer(weight: torch.Tensor) -> torch.Tensor:
    """L_r(W) = (1/C)·Σ_i max_{j≠i} cos(W_i, W_j) over the rows of W (RegularFace, Zhao et al. CVPR 2019)."""
    w = weight.to(_work_dtype(weight))
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = w @ w.t()
    eye = torch.eye(len(w), dtype=torch.bool, device=w.device)
    return cos.masked_fill(eye, float("-inf")).amax(dim=1).mean()
