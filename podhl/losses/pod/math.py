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
    """cos θ between every x and every p̃ (B, k); its argmax is the prediction (eq. 21–24)."""
    return F.normalize(features, dim=1, eps=COSINE_EPS) @ _unit(centroids, centroids_normalized).t()


def nac_cosine(
    features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, delta, denominator: str = "sum",
    centroids_normalized: bool = False,
) -> torch.Tensor:
    """cos_Na θ_y (B,) of eq. 12–16: x·p̃_y / (‖x‖ + δ).

    ``denominator="sqrt"`` is the official code's variant x·p̃_y / sqrt(‖x‖² + δ²) (a switch).
    """
    one_of("denominator", denominator, DENOMINATORS)
    target = _unit(centroids, centroids_normalized)[labels]
    dot = (features * target).sum(dim=1)
    norm = features.norm(dim=1)
    if denominator == "sum":
        return dot / (norm + delta)
    return dot / torch.sqrt(norm.square() + torch.as_tensor(delta, dtype=norm.dtype, device=norm.device) ** 2)


def cosine_loss(features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor,
                centroids_normalized: bool = False) -> torch.Tensor:
    """Cosine Loss (eq. 9): mean (1 − cos θ_y)², cos θ_y = x·p̃_y / (‖x‖ + ε), ε = 1e-12 (eq. 10–11)."""
    return (1.0 - nac_cosine(features, labels, centroids, COSINE_EPS,
                             centroids_normalized=centroids_normalized)).square().mean()


def nac_loss(
    features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, delta, denominator: str = "sum",
    centroids_normalized: bool = False,
) -> torch.Tensor:
    """NaC Loss (eq. 16–17): mean (1 − cos_Na θ_y)², cos_Na θ_y = x·p̃_y / (‖x‖ + δ)."""
    return (1.0 - nac_cosine(features, labels, centroids, delta, denominator, centroids_normalized)).square().mean()


def sc_loss(
    features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, divide_by_n_minus_1: bool = False,
    centroids_normalized: bool = False,
) -> torch.Tensor:
    """SC Loss (eq. 18–19): Σ_{i≠j} R_ij², R = ZᵀZ / (B−1) (n × n), Z_b = x_b/‖x_b‖ − p̃_{y_b}.

    ``divide_by_n_minus_1`` divides by (n−1) as the official code does (a switch). A batch of one
    sample has no correlation estimate: the loss is then 0 (still connected to the graph).
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
    features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, s: float, m: float,
    centroids_normalized: bool = False,
) -> torch.Tensor:
    """PEDCC-AM (eq. 2): cross-entropy of s·(cos θ_j − m·[j = y]) on the frozen PEDCC."""
    cos = cosine_logits(features, centroids, centroids_normalized)
    margin = F.one_hot(labels, cos.shape[1]).to(cos.dtype) * m
    return F.cross_entropy(s * (cos - margin), labels)


def pedcc_mse_loss(
    features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, reduction: str = "paper",
    centroids_normalized: bool = False,
) -> torch.Tensor:
    """PEDCC-MSE (eq. 3): (1/2N) Σ_i ‖x̃_i − p̃_{y_i}‖² with x̃ the normalized feature.

    ``reduction="sum"`` is the authors' code instead (ZLeopard/PEDCC-Loss ``tools/train_net.py`` @a7db70f:
    ``torch.nn.MSELoss(reduction='sum')``): Σ_i Σ_d (x̃_id − p̃_{y_i,d})², summed over the batch and the
    dimensions, i.e. 2N times eq. 3 (each summand is 2 − 2·cos θ_{y_i}).
    """
    one_of("reduction", reduction, MSE_REDUCTIONS)
    diff = F.normalize(features, dim=1, eps=COSINE_EPS) - _unit(centroids, centroids_normalized)[labels]
    per_sample = diff.square().sum(dim=1)
    return per_sample.sum() if reduction == "sum" else 0.5 * per_sample.mean()
