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
    "chebyshev_cos_derivative",
    "sphereface_sign_k",
    "sphereface_psi",
    "sphereface_lambda",
    "magface_margin",
    "magface_g",
    "exclusive_regularizer",
    "exclusive_regularizer_of_unit_rows",
    "nearest_other_rows",
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


def chebyshev_cos_derivative(cosine: torch.Tensor, m: int) -> torch.Tensor:
    """d cos(mθ) / d cos θ = T_m'(cos θ) = m·U_{m−1}(cos θ) (Chebyshev polynomial of the second kind)."""
    prev, cur = torch.zeros_like(cosine), torch.ones_like(cosine)  # U_{−1}, U_0
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cosine * cur - prev
    return m * cur


def sphereface_sign_k(cosine: torch.Tensor, m: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(−1)^k and k of ψ's piece, k = ⌊m·θ/π⌋ clamped to 0..m−1 (piecewise constant, no gradient)."""
    with torch.no_grad():
        k = torch.floor(m * angle(cosine) / math.pi).clamp(0, m - 1)
        return 1.0 - 2.0 * torch.remainder(k, 2.0), k


def sphereface_psi(cosine: torch.Tensor, m: int = 4) -> torch.Tensor:
    """ψ(θ) = (−1)^k cos(mθ) − 2k on [kπ/m, (k+1)π/m], k = 0..m−1 (SphereFace, CVPR 2017, §3.3).

    Continuous and decreasing on [0, π], ψ(π) = 1 − 2m. k is piecewise constant (no gradient).
    """
    cosine = cosine.to(_work_dtype(cosine)).clamp(-1.0, 1.0)
    sign, k = sphereface_sign_k(cosine, m)
    return sign * chebyshev_cos(cosine, m) - 2.0 * k


def sphereface_lambda(iteration: int | float, base: float = 1000.0, gamma: float = 0.12, power: float = 1.0,
                      lambda_min: float = 5.0) -> float:
    """λ = max(λ_min, base·(1 + γ·it)^(−power)) (SphereFace Caffe ``margin_inner_product`` layer).

    ``iteration`` is the layer's counter ``iter_`` *after* its pre-increment: 1 at the first training
    forward (``ASoftmaxLoss`` passes optimizer steps taken + 1).
    """
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
@torch.no_grad()
def nearest_other_rows(unit_rows: torch.Tensor, block_size: int = 1024) -> torch.Tensor:
    """For each row i of ``unit_rows`` (C, d), the index of its most similar other row,
    argmax_{j≠i} ⟨u_i, u_j⟩ (C,), without gradient and without a C×C matrix.

    The Gram matrix is symmetric, so only its blocks (I, J) with J ≥ I are formed, ``block_size`` rows
    at a time: block (I, J) updates the best candidates of the rows of I (row maxima) and of J (column
    maxima). Memory O(block_size² + C), work C²·d/2.
    """
    num = unit_rows.shape[0]
    best = torch.full((num,), float("-inf"), dtype=unit_rows.dtype, device=unit_rows.device)
    index = torch.zeros(num, dtype=torch.long, device=unit_rows.device)

    def offer(rows: slice, values: torch.Tensor, candidates: torch.Tensor) -> None:
        better = values > best[rows]
        best[rows] = torch.where(better, values, best[rows])
        index[rows] = torch.where(better, candidates, index[rows])

    for i0 in range(0, num, block_size):
        rows = slice(i0, min(i0 + block_size, num))
        for j0 in range(i0, num, block_size):
            cols = slice(j0, min(j0 + block_size, num))
            gram = unit_rows[rows] @ unit_rows[cols].t()
            if j0 == i0:  # the diagonal block: a row is not its own neighbour
                gram.fill_diagonal_(float("-inf"))
            values, arg = gram.max(dim=1)
            offer(rows, values, arg + j0)
            if j0 != i0:  # column maxima, from a contiguous transpose (max over dim 0 is strided and slow)
                values, arg = gram.t().contiguous().max(dim=1)
                offer(cols, values, arg + i0)
    return index


class _SelectedPairDots(torch.autograd.Function):
    """⟨u_i, u_{n(i)}⟩ for each row i and a fixed index n (no gradient through n). Saves only u and n:
    autograd would also keep the gathered copy u[n] (C×d) until the backward."""

    @staticmethod
    def forward(ctx, unit_rows: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(unit_rows, neighbour)
        return (unit_rows * unit_rows[neighbour]).sum(dim=1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        unit_rows, neighbour = ctx.saved_tensors
        g = grad.unsqueeze(1)
        out = unit_rows[neighbour].mul_(g)  # ∂/∂u_i of ⟨u_i, u_{n(i)}⟩
        out.index_add_(0, neighbour, unit_rows * g)  # ∂/∂u_{n(i)}, summed over the rows that chose it
        return out, None


def exclusive_regularizer_of_unit_rows(unit_rows: torch.Tensor, block_size: int = 1024) -> torch.Tensor:
    """L_r from rows that are already unit vectors (e.g. the margin head's normalized W, shared)."""
    neighbour = nearest_other_rows(unit_rows.detach(), block_size)
    return _SelectedPairDots.apply(unit_rows, neighbour).mean()


def exclusive_regularizer(weight: torch.Tensor, block_size: int = 1024) -> torch.Tensor:
    """L_r(W) = (1/C)·Σ_i max_{j≠i} cos(W_i, W_j) over the rows of W (RegularFace, Zhao et al. CVPR 2019).

    As the first author's ``ExclusiveLinear`` (zeakey/face2019 ``pytorch/ops.py`` @d217fe0) does, each
    row's nearest other row is found without gradient (:func:`nearest_other_rows`, in row blocks, never
    a C×C matrix), then only the C selected pairs are differentiated: the same value and gradient as
    the dense max over the C×C cosine matrix (where the max is unique; at an exact tie the dense
    ``amax`` splits the gradient, this picks one pair), at O(C·d) memory.
    """
    w = weight.to(_work_dtype(weight))
    return exclusive_regularizer_of_unit_rows(w / w.norm(dim=1, keepdim=True).clamp_min(1e-12), block_size)
