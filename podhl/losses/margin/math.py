"""Normalized-classifier margin math: clamped angle, monotone fallback, target scatter, SphereFace ψ(θ),
MagFace m(a)/g(a), RegularFace L_r. Pure functions, no state.

All functions compute in (at least) fp32, are out-of-place (exact autograd) and keep ``acos`` away
from ±1 by clamping the cosine to ±(1 − 1e-7), so gradients stay finite at cos = ±1.

Each margin head's own file computes its target logit (ArcFace: cos(θ_y + m); CM: cos(m1·θ_y + m2) − m3;
...) and uses ``angle`` for θ_y and ``monotone_fallback`` past the angle where its argument
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
    """``t`` in at least fp32 (fp16/bf16 → fp32; fp64 stays fp64 so gradcheck can run in double).

    Args:
        t: any floating tensor.

    Returns:
        ``t`` cast to fp32 or kept in fp64.
    """
    return t.to(_work_dtype(t))


def angle(cos: torch.Tensor) -> torch.Tensor:
    r"""$\theta = \arccos(\cos\theta)$, the cosine clamped to $\pm(1 - 10^{-7})$ first (finite gradients).

    Args:
        cos: cosines, any shape.

    Returns:
        Angles in radians, in $(0, \pi)$, same shape.
    """
    return torch.acos(cos.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))


def monotone_fallback(
    target: torch.Tensor,
    cos_y: torch.Tensor,
    phi: torch.Tensor,
    m1: float = 1.0,
    m2: float | torch.Tensor = 0.0,
    m3: float = 0.0,
) -> torch.Tensor:
    r"""``target`` where $\varphi = m_1\theta_y + m_2 \le \pi$, else $\cos\theta_y - (1 + \cos\theta^*) - m_3$
    with $\theta^* = (\pi - m_2)/m_1$: the continuous, decreasing extension (module docstring; podhl's,
    no paper equation).

    Args:
        target: $(B,)$ the head's target logit before the scale, e.g. $\cos(\theta_y + m)$.
        cos_y: $(B,)$ $\cos\theta_y$.
        phi: $(B,)$ the angle argument $m_1\theta_y + m_2$, radians.
        m1: multiplicative angular margin. Default 1.
        m2: additive angular margin in radians, a float or a per-sample $(B,)$ tensor. Default 0.
        m3: additive cosine margin. Default 0.

    Returns:
        $(B,)$ target logits, continuous and strictly decreasing in $\theta_y$ on $[0, \pi]$.
    """
    m2 = torch.as_tensor(m2, dtype=cos_y.dtype, device=cos_y.device)
    theta_star = ((math.pi - m2) / m1).clamp(max=math.pi)
    outside = cos_y - (1.0 + torch.cos(theta_star)) - m3
    return torch.where(phi <= math.pi, target, outside)


def scatter_target(cosine: torch.Tensor, labels: torch.Tensor, target: torch.Tensor, scale: float) -> torch.Tensor:
    r"""Logits $s\cos\theta_j$ off-target and $s\cdot$``target`` on target.

    Args:
        cosine: $(B, C)$ cosines.
        labels: $(B,)$ class indices.
        target: $(B,)$ target logits before the scale.
        scale: $s$, scale of the logits.

    Returns:
        $(B, C)$ logits in ``cosine``'s dtype.
    """
    index = labels.view(-1, 1)
    return scale * cosine.scatter(1, index, target.unsqueeze(1).to(cosine.dtype))


# ---------------------------------------------------------------- SphereFace (A-Softmax)
def chebyshev_cos(cosine: torch.Tensor, m: int) -> torch.Tensor:
    r"""$\cos(m\theta) = T_m(\cos\theta)$ by the Chebyshev recurrence (a polynomial: smooth, no acos).

    Args:
        cosine: $\cos\theta$, any shape.
        m: integer multiple $m \ge 0$.

    Returns:
        $\cos(m\theta)$, same shape.
    """
    prev, cur = torch.ones_like(cosine), cosine
    if m == 0:
        return prev
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cosine * cur - prev
    return cur


def chebyshev_cos_derivative(cosine: torch.Tensor, m: int) -> torch.Tensor:
    r"""$d\cos(m\theta)/d\cos\theta = T_m'(\cos\theta) = m\,U_{m-1}(\cos\theta)$ (second kind).

    Args:
        cosine: $\cos\theta$, any shape.
        m: integer multiple $m \ge 1$.

    Returns:
        The derivative, same shape.
    """
    prev, cur = torch.zeros_like(cosine), torch.ones_like(cosine)  # U_{−1}, U_0
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cosine * cur - prev
    return m * cur


def sphereface_sign_k(cosine: torch.Tensor, m: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    r"""$(-1)^k$ and $k$ of $\psi$'s piece, $k = \lfloor m\theta/\pi\rfloor$ clamped to $0..m-1$ (no gradient).

    Args:
        cosine: $\cos\theta$, any shape.
        m: SphereFace's integer margin. Default 4.

    Returns:
        ``(sign, k)``, two tensors of ``cosine``'s shape.
    """
    with torch.no_grad():
        k = torch.floor(m * angle(cosine) / math.pi).clamp(0, m - 1)
        return 1.0 - 2.0 * torch.remainder(k, 2.0), k


def sphereface_psi(cosine: torch.Tensor, m: int = 4) -> torch.Tensor:
    r"""SphereFace's $\psi(\theta) = (-1)^k\cos(m\theta) - 2k$ on $[k\pi/m, (k+1)\pi/m]$, $k = 0..m-1$
    (Liu et al., CVPR 2017, §3.3; equation number not checked).

    Continuous and decreasing on $[0, \pi]$, $\psi(\pi) = 1 - 2m$; $k$ carries no gradient.

    Args:
        cosine: $\cos\theta$, any shape.
        m: integer margin. Default 4 (SphereFace's).

    Returns:
        $\psi(\theta)$, same shape, at least fp32.
    """
    cosine = cosine.to(_work_dtype(cosine)).clamp(-1.0, 1.0)
    sign, k = sphereface_sign_k(cosine, m)
    return sign * chebyshev_cos(cosine, m) - 2.0 * k


def sphereface_lambda(
    iteration: int | float, base: float = 1000.0, gamma: float = 0.12, power: float = 1.0, lambda_min: float = 5.0
) -> float:
    r"""$\lambda = \max(\lambda_{\min}, \mathrm{base}\cdot(1 + \gamma\, it)^{-\mathrm{power}})$ of SphereFace's Caffe
    ``margin_inner_product`` layer (no paper equation). Defaults: ``sphereface_model.prototxt`` @7f9acb1.

    Args:
        iteration: $it$, the layer's counter *after* its pre-increment: 1 at the first training
            forward (``ASoftmaxLoss`` passes optimizer steps taken + 1).
        base: starting scale. Default 1000.
        gamma: $\gamma$, decay rate per iteration. Default 0.12.
        power: decay exponent. Default 1.
        lambda_min: $\lambda_{\min}$, the floor. Default 5.

    Returns:
        $\lambda$, a float.
    """
    return max(lambda_min, base * (1.0 + gamma * float(iteration)) ** (-power))


# ---------------------------------------------------------------- MagFace
def magface_margin(
    a: torch.Tensor, l_a: float = 10.0, u_a: float = 110.0, l_m: float = 0.45, u_m: float = 0.8
) -> torch.Tensor:
    r"""MagFace's margin $m(a) = \frac{u_m - l_m}{u_a - l_a}(a - l_a) + l_m$ (Meng et al., CVPR 2021, §3.2, eq. 3).

    Args:
        a: feature magnitudes $\lVert x\rVert$, already clamped to $[l_a, u_a]$.
        l_a: lower magnitude bound. Default 10.
        u_a: upper magnitude bound. Default 110.
        l_m: margin at $l_a$, radians. Default 0.45.
        u_m: margin at $u_a$, radians. Default 0.8.

    Returns:
        $m(a)$ in radians, same shape as ``a``, increasing on $[l_a, u_a]$.
    """
    return (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m


def magface_g(a: torch.Tensor, u_a: float = 110.0) -> torch.Tensor:
    r"""MagFace's regularizer $g(a) = 1/a + a/u_a^2$, convex, minimal at $a = u_a$ (§3.2, eq. 3).

    Args:
        a: feature magnitudes $\lVert x\rVert$, already clamped to $[l_a, u_a]$.
        u_a: upper magnitude bound. Default 110.

    Returns:
        $g(a)$, same shape as ``a``.
    """
    return 1.0 / a + a / (u_a * u_a)


# ---------------------------------------------------------------- RegularFace
@torch.no_grad()
def nearest_other_rows(unit_rows: torch.Tensor, block_size: int = 1024) -> torch.Tensor:
    r"""For each row $i$, the index of its most similar other row, $\arg\max_{j \ne i}\langle u_i, u_j\rangle$,
    without gradient and without a $C \times C$ matrix (RegularFace's neighbour; no equation of its own).

    The Gram matrix is symmetric, so only its blocks (I, J) with J ≥ I are formed, ``block_size`` rows
    at a time: block (I, J) updates the best candidates of the rows of I (row maxima) and of J (column
    maxima). Memory O(block_size² + C), work C²·d/2.

    Args:
        unit_rows: $(C, d)$ unit-norm rows.
        block_size: rows per block. Default 1024.

    Returns:
        $(C,)$ long indices.
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


def exclusive_regularizer_of_unit_rows(
    unit_rows: torch.Tensor, block_size: int = 1024, neighbour: torch.Tensor | None = None
) -> torch.Tensor:
    r"""RegularFace's $L_r$ (``exclusive_regularizer``) from rows that are already unit vectors.

    Args:
        unit_rows: $(C, d)$ unit-norm rows (e.g. the margin head's normalized $W$, shared).
        block_size: rows per block of the neighbour search. Default 1024.
        neighbour: $(C,)$ each row's neighbour, found earlier (``loss.refresh_every``); None
            (default): searched now, $O(C^2 d)$.

    Returns:
        The scalar $L_r$ (with ``neighbour`` given: the mean cosine to those rows, $\le L_r$).
    """
    if neighbour is None:
        neighbour = nearest_other_rows(unit_rows.detach(), block_size)
    return _SelectedPairDots.apply(unit_rows, neighbour).mean()


def exclusive_regularizer(weight: torch.Tensor, block_size: int = 1024) -> torch.Tensor:
    r"""RegularFace's $L_r(W) = \frac{1}{C}\sum_i \max_{j \ne i}\cos(W_i, W_j)$ (Zhao et al., CVPR 2019;
    equation number not checked).

    As the first author's ``ExclusiveLinear`` (zeakey/face2019 ``pytorch/ops.py`` @d217fe0) does, each
    row's nearest other row is found without gradient (``nearest_other_rows``, in row blocks, never
    a C×C matrix), then only the C selected pairs are differentiated: the same value and gradient as
    the dense max over the C×C cosine matrix (where the max is unique; at an exact tie the dense
    ``amax`` splits the gradient, this picks one pair), at O(C·d) memory.

    Args:
        weight: $(C, d)$ class weights, any norms.
        block_size: rows per block of the neighbour search. Default 1024.

    Returns:
        The scalar $L_r$, in $[-1, 1]$.
    """
    w = weight.to(_work_dtype(weight))
    return exclusive_regularizer_of_unit_rows(w / w.norm(dim=1, keepdim=True).clamp_min(1e-12), block_size)
