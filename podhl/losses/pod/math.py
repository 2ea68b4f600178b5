"""POD family math (Zhu & Zu, POD Loss; PEDCC-Loss, POD §2.2): pure functions, no state.

All take ``features`` (B, n) — the latent x from FC1, *not* normalized by the model — ``labels``
(B,) and ``centroids`` (k, n), the PEDCC (unit rows; they are normalized here anyway, p̃, unless
``centroids_normalized=True`` says the caller already did: the losses normalize their frozen PEDCC
once, ``PEDCCCriterion.unit_pedcc``), and return a scalar: the mean over the batch (SC: the batch
statistic of eq. 18–19).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import one_of

__all__ = [
    "COSINE_EPS",
    "DENOMINATORS",
    "cosine_logits",
    "cosine_loss",
    "nac_cosine",
    "nac_loss",
    "sc_loss",
    "pedcc_am_loss",
    "pedcc_mse_loss",
    "MSE_REDUCTIONS",
]

COSINE_EPS = 1e-12  # ε of eq. 10–11
DENOMINATORS = ("sum", "sqrt")  # ‖x‖ + δ (eq. 16) | sqrt(‖x‖² + δ²) (the official code)
MSE_REDUCTIONS = ("paper", "sum")  # (1/2N)·Σ_i ‖x̃_i − p̃_{y_i}‖² (eq. 3) | Σ_i Σ_d (·)² (PEDCC-Loss code)


def _unit(centroids: torch.Tensor, centroids_normalized: bool) -> torch.Tensor:
    """p̃: the centroids as given when the caller normalized them already, else normalized here."""
    return centroids if centroids_normalized else F.normalize(centroids, dim=1)


def cosine_logits(features: torch.Tensor, centroids: torch.Tensor, centroids_normalized: bool = False) -> torch.Tensor:
    r"""Cosines between every feature and every centroid; their argmax is the prediction (POD eq. 21–24).

    Args:
        features: $(B, n)$ latent features $x$, not normalized.
        centroids: $(k, n)$ PEDCC centroids $p$.
        centroids_normalized: True when the caller passes $\tilde p$ already normalized. Default False.

    Returns:
        $(B, k)$ $\cos\theta$ between each $x$ and each $\tilde p$.
    """
    return F.normalize(features, dim=1, eps=COSINE_EPS) @ _unit(centroids, centroids_normalized).t()


def nac_cosine(
    features: torch.Tensor,
    labels: torch.Tensor,
    centroids: torch.Tensor,
    delta: float | torch.Tensor,
    denominator: str = "sum",
    centroids_normalized: bool = False,
) -> torch.Tensor:
    r"""$\cos_{Na}\theta_y = x\cdot\tilde p_y / (\lVert x\rVert + \delta)$ (POD eq. 12–16).

    Args:
        features: $(B, n)$ latent features $x$, not normalized.
        labels: $(B,)$ class indices.
        centroids: $(k, n)$ PEDCC centroids $p$.
        delta: $\delta \ge 0$, added to the norm (feature-norm units); $\varepsilon = 10^{-12}$ gives
            the plain cosine of eq. 10–11.
        denominator: ``"sum"`` (default, eq. 16): $\lVert x\rVert + \delta$; ``"sqrt"``: the official
            code's $\sqrt{\lVert x\rVert^2 + \delta^2}$.
        centroids_normalized: True when the caller passes $\tilde p$ already normalized. Default False.

    Returns:
        $(B,)$ $\cos_{Na}\theta_{y_i}$ per sample.
    """
    one_of("denominator", denominator, DENOMINATORS)
    target = _unit(centroids, centroids_normalized)[labels]
    dot = (features * target).sum(dim=1)
    norm = features.norm(dim=1)
    if denominator == "sum":
        return dot / (norm + delta)
    return dot / torch.sqrt(norm.square() + torch.as_tensor(delta, dtype=norm.dtype, device=norm.device) ** 2)


def cosine_loss(
    features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, centroids_normalized: bool = False
) -> torch.Tensor:
    r"""Cosine Loss (POD eq. 9): $\frac{1}{N}\sum_i (1 - \cos\theta_{y_i})^2$,
    $\cos\theta_y = x\cdot\tilde p_y / (\lVert x\rVert + \varepsilon)$, $\varepsilon = 10^{-12}$ (eq. 10–11).

    Args:
        features: $(B, n)$ latent features $x$, not normalized.
        labels: $(B,)$ class indices.
        centroids: $(k, n)$ PEDCC centroids $p$.
        centroids_normalized: True when the caller passes $\tilde p$ already normalized. Default False.

    Returns:
        The scalar loss, mean over the batch.
    """
    return (
        (1.0 - nac_cosine(features, labels, centroids, COSINE_EPS, centroids_normalized=centroids_normalized))
        .square()
        .mean()
    )


def nac_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    centroids: torch.Tensor,
    delta: float | torch.Tensor,
    denominator: str = "sum",
    centroids_normalized: bool = False,
) -> torch.Tensor:
    r"""NaC Loss (POD eq. 17): $\frac{1}{N}\sum_i (1 - \cos_{Na}\theta_{y_i})^2$ (eq. 16, ``nac_cosine``).

    Args:
        features: $(B, n)$ latent features $x$, not normalized.
        labels: $(B,)$ class indices.
        centroids: $(k, n)$ PEDCC centroids $p$.
        delta: $\delta(e, M) = \alpha e M \ge 0$, this epoch's value (feature-norm units).
        denominator: ``"sum"`` (default, eq. 16) or ``"sqrt"`` (official code), see ``nac_cosine``.
        centroids_normalized: True when the caller passes $\tilde p$ already normalized. Default False.

    Returns:
        The scalar loss, mean over the batch.
    """
    return (1.0 - nac_cosine(features, labels, centroids, delta, denominator, centroids_normalized)).square().mean()


def sc_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    centroids: torch.Tensor,
    divide_by_n_minus_1: bool = False,
    centroids_normalized: bool = False,
) -> torch.Tensor:
    r"""SC Loss (POD eq. 18–19): $\sum_{i \ne j} R_{ij}^2$, $R = Z^\top Z/(B-1)$ ($n \times n$),
    $Z_b = x_b/\lVert x_b\rVert - \tilde p_{y_b}$.

    A batch of one sample has no correlation estimate: the loss is then 0 (still connected to the graph).

    Args:
        features: $(B, n)$ latent features $x$, not normalized.
        labels: $(B,)$ class indices.
        centroids: $(k, n)$ PEDCC centroids $p$.
        divide_by_n_minus_1: also divide by $n - 1$, as the official code does. Default False (the paper).
        centroids_normalized: True when the caller passes $\tilde p$ already normalized. Default False.

    Returns:
        The scalar loss, a statistic of the batch.
    """
    batch = features.shape[0]
    if batch < 2:
        return features.sum() * 0.0
    z = F.normalize(features, dim=1, eps=COSINE_EPS) - _unit(centroids, centroids_normalized)[labels]
    # The diagonal is masked out of the n × n matrix, never subtracted: ‖ZᵀZ‖² − ‖diag‖² (or the
    # B × B Gram matrix ZZᵀ) is the same sum, but in float32 its gradient keeps a rounding residue of
    # the diagonal that moves sensitive runs (2-D POD Fig. 6) by points (tested against float64).
    r = z.t() @ z / (batch - 1)
    off = r.masked_fill(torch.eye(r.shape[0], dtype=torch.bool, device=r.device), 0.0)
    loss = off.square().sum()
    if divide_by_n_minus_1:
        loss = loss / max(features.shape[1] - 1, 1)
    return loss


def pedcc_am_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    centroids: torch.Tensor,
    s: float,
    m: float,
    centroids_normalized: bool = False,
) -> torch.Tensor:
    r"""PEDCC-AM (POD eq. 2): cross-entropy of $s(\cos\theta_j - m[j = y])$ on the frozen PEDCC.

    Args:
        features: $(B, n)$ latent features $x$, not normalized.
        labels: $(B,)$ class indices.
        centroids: $(k, n)$ PEDCC centroids $p$.
        s: $s > 0$, scale of the logits.
        m: additive margin on the target cosine (unitless).
        centroids_normalized: True when the caller passes $\tilde p$ already normalized. Default False.

    Returns:
        The scalar cross-entropy, mean over the batch.
    """
    cos = cosine_logits(features, centroids, centroids_normalized)
    margin = F.one_hot(labels, cos.shape[1]).to(cos.dtype) * m
    return F.cross_entropy(s * (cos - margin), labels)


def pedcc_mse_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    centroids: torch.Tensor,
    reduction: str = "paper",
    centroids_normalized: bool = False,
) -> torch.Tensor:
    r"""PEDCC-MSE (POD eq. 3): $\frac{1}{2N}\sum_i \lVert \tilde x_i - \tilde p_{y_i}\rVert^2$, $\tilde x$ the
    normalized feature.

    Args:
        features: $(B, n)$ latent features $x$, not normalized.
        labels: $(B,)$ class indices.
        centroids: $(k, n)$ PEDCC centroids $p$.
        reduction: ``"paper"`` (default, eq. 3) or ``"sum"``, the authors' code (ZLeopard/PEDCC-Loss
            ``tools/train_net.py`` @a7db70f, ``MSELoss(reduction='sum')``): summed over the batch and the
            dimensions, $2N$ times eq. 3.
        centroids_normalized: True when the caller passes $\tilde p$ already normalized. Default False.

    Returns:
        The scalar loss.
    """
    one_of("reduction", reduction, MSE_REDUCTIONS)
    diff = F.normalize(features, dim=1, eps=COSINE_EPS) - _unit(centroids, centroids_normalized)[labels]
    per_sample = diff.square().sum(dim=1)
    return per_sample.sum() if reduction == "sum" else 0.5 * per_sample.mean()
