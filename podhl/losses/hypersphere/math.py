"""Hypersphere Loss (HL, Wang et al., IEEE TII 2024): pure math, no state.

Equation numbers are the HL paper's. Everything is vectorized over classes, from per-class sums and
counts (``podhl.losses.center.math.class_sums``, shared with center loss and CCL) or per-class
(C, d) algebra: no loop over classes and no B×C×d tensor. The ``*_rows`` forms take only the rows of
the classes a batch holds and the total T = Σ_l c_l, so a training step costs O(B·d), not O(C·d)
(``podhl.losses.center.rows``; C = 10⁵ and more).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from podhl.checks import in_range, integer, one_of
from podhl.losses.center.math import sphere_centers
from podhl.losses.margin.lean_ce import normalized_margin_cross_entropy

__all__ = [
    "PENALTY_POWERS",
    "PENALTY_NORMALIZATIONS",
    "feature_sphere_radius",
    "generalized_center_penalty",
    "penalty_from_rows",
    "class_center_separation",
    "separation_from_rows",
    "ewma_center_update_from_sums",
    "ewma_center_rows",
    "closed_form_centers",
    "pairwise_cosine_stats",
]

PENALTY_POWERS = (2, 4)  # [ι·d]² (eq. 17) | d⁴ (the authors' code)
PENALTY_NORMALIZATIONS = ("batch", "elements")  # 1/(2B) (eq. 17) | 1/(2·B·d) (the authors' code)


def feature_sphere_radius(num_classes: int, dim: int, r: float) -> float:
    r"""Radius $a = r\sin\theta_C$ of the feature hyperspheres (HL §III-A; no equation number), where a cap of
    half-angle $\theta_C$ covers $1/C$ of the radius-$r$ sphere in $\mathbb{R}^d$:
    $\frac{1}{2} I_{\sin^2\theta_C}\big(\frac{d-1}{2}, \frac{1}{2}\big) = \frac{1}{C}$. $C = 10$, $d = 512$ gives
    $a \approx 0.99839\,r$.

    Args:
        num_classes: $C \ge 2$.
        dim: $d \ge 2$, feature dimension.
        r: $r > 0$, radius of the centers' sphere (feature-norm units).

    Returns:
        $a$, in $r$'s units.
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
    r"""Generalized center penalty (HL eq. 17 without $\lambda$): $\frac{1}{2B}\sum_i [\iota(d_i)\,d_i]^2$,
    $d_i = \lVert f_i - c_{y_i}\rVert$, $\iota = 0$ inside the dead zone $d <$ ``threshold`` $(= \varepsilon a)$,
    1 outside (eq. 11). Computed from $d^2$ (no square root), so the gradient is defined at $d = 0$.

    Args:
        features: $(B, d)$ features $f$.
        labels: $(B,)$ class indices.
        centers: $(C, d)$ class centers.
        threshold: $\varepsilon a \ge 0$, the dead-zone radius (feature-norm units).
        power: 2 (default, eq. 17) or 4 ($d^4$, the authors' code).
        normalization: ``"batch"`` (default, $1/(2B)$, eq. 17) or ``"elements"`` ($1/(2Bd)$, the authors' code).
        valid: $(B,)$ bool, False for samples whose center is not set yet (left out). Default None (all).

    Returns:
        The scalar penalty.
    """
    return penalty_from_rows(features, centers[labels], threshold, power, normalization, valid)


def penalty_from_rows(
    features: torch.Tensor,
    rows: torch.Tensor,
    threshold: float,
    power: int = 2,
    normalization: str = "batch",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""``generalized_center_penalty`` from each sample's center row $c_{y_i}$ (HL eq. 17), $O(Bd)$.

    Args:
        features: $(B, d)$ features $f$.
        rows: $(B, d)$ each sample's class center $c_{y_i}$.
        threshold: $\varepsilon a \ge 0$, the dead-zone radius (feature-norm units).
        power: 2 (default, eq. 17) or 4 ($d^4$, the authors' code).
        normalization: ``"batch"`` (default, $1/(2B)$, eq. 17) or ``"elements"`` ($1/(2Bd)$, the authors' code).
        valid: $(B,)$ bool, False for samples whose center is not set yet (left out). Default None (all).

    Returns:
        The scalar penalty.
    """
    one_of("power", power, PENALTY_POWERS)
    one_of("normalization", normalization, PENALTY_NORMALIZATIONS)
    d2 = (features - rows).pow(2).sum(dim=1)
    iota = d2 >= float(threshold) ** 2
    if valid is not None:
        iota = iota & valid
    term = d2 if power == 2 else d2 * d2
    denom = 2 * features.shape[0] * (features.shape[1] if normalization == "elements" else 1)
    return torch.where(iota, term, torch.zeros_like(term)).sum() / denom


def class_center_separation(labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    r"""Class center separation (HL eq. 10 without $\beta$): $\frac{1}{B(C-1)}\sum_i\sum_{l \ne y_i} c_{y_i}^\top c_l$.

    Uses $\sum_{l \ne k} c_l = T - c_k$ with $T = \sum_l c_l$ ($O(Cd)$ for $T$; the loss keeps $T$ as a
    running total and calls ``separation_from_rows``, $O(Bd)$).

    Args:
        labels: $(B,)$ class indices.
        centers: $(C, d)$ class centers.

    Returns:
        The scalar separation (squared feature-norm units).
    """
    return separation_from_rows(centers[labels], centers.sum(dim=0), centers.shape[0])


def separation_from_rows(rows: torch.Tensor, total: torch.Tensor, num_classes: int) -> torch.Tensor:
    r"""``class_center_separation`` from the samples' centers and the total $T$:
    $\frac{1}{B(C-1)}\sum_i c_{y_i}^\top(T - c_{y_i})$ (HL eq. 10 without $\beta$), $O(Bd)$.

    Args:
        rows: $(B, d)$ each sample's class center $c_{y_i}$.
        total: $(d,)$ $T = \sum_l c_l$ over all C classes (any dtype; used in ``rows``' dtype).
        num_classes: $C$.

    Returns:
        The scalar separation (squared feature-norm units).
    """
    per_sample = rows @ total.to(rows.dtype) - rows.pow(2).sum(dim=1)  # c_yᵀ(T − c_y), (B,)
    return per_sample.sum() / (rows.shape[0] * (num_classes - 1))


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
    r"""HL's EWMA center update (eq. 15–16) from per-class feature sums $S_k$ and counts $n_k$ (what DDP reduces):

    $$u_k = \frac{\varphi n_k c_k + (1-\varphi) S_k}{1 - \varphi^{N_c}} - \frac{n_k\beta}{C-1}(T - c_k), \qquad
    c_k \leftarrow r\,\frac{u_k}{\lVert u_k\rVert}$$

    i.e. $\sum_{i: y_i = k}(v_i - \frac{\beta}{C-1}\sum_{l \ne k} c_l)$ with $T = \sum_l c_l$.

    Args:
        centers: $(C, d)$ current centers.
        sums: $(C, d)$ per-class feature sums $S_k$.
        counts: $(C,)$ per-class counts $n_k$.
        phi: $\varphi \in (0, 1)$, EWMA factor.
        beta: $\beta \ge 0$, separation weight.
        radius: $r > 0$ (feature-norm units).
        step: $N_c \ge 1$, the number of this update.
        bias_correction: divide by $1 - \varphi^{N_c}$ (eq. 15). Default True; False: the authors' code.
        keep_absent: a class with $n_k = 0$ (or a zero sum) keeps its center. Default True; False sets
            it to zero, as the authors' code does (``get_center_momentum`` in ``Cifar10_HL_main.py``
            @ba67071 sums into a zero tensor and ``renorm`` leaves a zero row at zero).

    Returns:
        $(C, d)$ new centers.
    """
    return ewma_center_rows(
        centers,
        sums,
        counts,
        centers.sum(dim=0),
        centers.shape[0],
        phi,
        beta,
        radius,
        step,
        bias_correction,
        keep_absent,
    )


def ewma_center_rows(
    rows: torch.Tensor,
    sums: torch.Tensor,
    counts: torch.Tensor,
    total: torch.Tensor,
    num_classes: int,
    phi: float,
    beta: float,
    radius: float,
    step: int,
    bias_correction: bool = True,
    keep_absent: bool = True,
) -> torch.Tensor:
    r"""``ewma_center_update_from_sums`` for some classes only (HL eq. 15–16), $O(Sd)$: their current centers
    ``rows``, sums and counts, and the total $T = \sum_l c_l$ over all $C$ classes, $(d,)$ (any dtype; used in
    ``rows``' dtype), for $\sum_{l \ne k} c_l = T - c_k$.

    Args:
        rows: $(S, d)$ current centers of the S classes.
        sums: $(S, d)$ their feature sums $S_k$.
        counts: $(S,)$ their counts $n_k$.
        total: $(d,)$ $T$.
        num_classes: $C$.
        phi: $\varphi \in (0, 1)$, EWMA factor.
        beta: $\beta \ge 0$, separation weight.
        radius: $r > 0$ (feature-norm units).
        step: $N_c \ge 1$, the number of this update.
        bias_correction: divide by $1 - \varphi^{N_c}$ (eq. 15). Default True.
        keep_absent: a row with $n_k = 0$ keeps its center. Default True; False: zero (the authors' code).

    Returns:
        $(S, d)$ new centers of the S classes (a row with $n_k = 0$: kept, or zero without ``keep_absent``).
    """
    integer("step", step, low=1)  # N_c
    scale = 1.0 / (1.0 - phi**step) if bias_correction else 1.0
    n = counts.to(rows.dtype).unsqueeze(1)
    others = total.to(rows.dtype).reshape(1, -1) - rows  # Σ_{l≠k} c_l, (S, d)
    u = (phi * n * rows + (1.0 - phi) * sums) * scale - n * (beta / (num_classes - 1)) * others
    return sphere_centers(u, counts, radius, rows if keep_absent else torch.zeros_like(rows))


def closed_form_centers(
    centers: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, beta: float, radius: float
) -> torch.Tensor:
    r"""Whole-training-set update (HL eq. 13; eq. 9 when $\beta = 0$):
    $c_k = r\,\mathrm{normalize}\big(S_k - \frac{n_k\beta}{C-1}(T - c_k)\big)$.

    Args:
        centers: $(C, d)$ current centers.
        sums: $(C, d)$ feature sums $S_k$ over the samples with $\delta(k, y_i) = 1$ (eq. 14).
        counts: $(C,)$ their counts $n_k$.
        beta: $\beta \ge 0$, separation weight.
        radius: $r > 0$ (feature-norm units).

    Returns:
        $(C, d)$ new centers; a class with no such sample keeps its center.
    """
    num_classes = centers.shape[0]
    others = centers.sum(dim=0, keepdim=True) - centers
    u = sums - counts.to(centers.dtype).unsqueeze(1) * (beta / (num_classes - 1)) * others
    return sphere_centers(u, counts, radius, centers)


def pairwise_cosine_stats(centers: torch.Tensor, chunk: int = 1024) -> tuple[float, float]:
    """Mean and max cosine over the pairs k < l of nonzero centers, a diagnostic (no equation): mean in
    closed form, max by row chunks (memory O(chunk·C), never C×C at once).

    Args:
        centers: $(C, d)$ class centers (zero rows: not set yet, left out).
        chunk: rows per chunk. Default 1024.

    Returns:
        ``(mean, max)`` as floats; NaN, NaN with fewer than two nonzero centers.
    """
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


def _no_margin(cos_y: torch.Tensor) -> torch.Tensor:
    return cos_y


def classifier_cross_entropy(
    features: torch.Tensor,
    classifier: torch.nn.Linear,
    labels: torch.Tensor,
    normalize_weight: bool,
    logits: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    r"""HL's softmax term $L_S$ (eq. 17): the cross-entropy of ``logits(features)``. With ``normalize_weight``
    and no bias (``hl_official``: $f\,\mathrm{normalize}(W)^\top$, ``Cifar10_HL_main.py`` @ba67071) through the
    lean normalized CE (:func:`podhl.losses.functional.normalized_margin_cross_entropy`: no margin, s = 1, the
    features as given): equal in value and gradients, without the normalized C×d copy of W and with one B×C
    buffer kept for backward.

    Args:
        features: $(B, d)$ fp32 features $f$.
        classifier: the linear classifier ($W$, optional $b$).
        labels: $(B,)$ class indices.
        normalize_weight: ``official.normalize_weight``.
        logits: the loss's own ``logits`` (the plain path).

    Returns:
        The scalar mean cross-entropy.
    """
    if normalize_weight and classifier.bias is None:
        return normalized_margin_cross_entropy(
            features, classifier.weight, labels, _no_margin, 1.0, normalize_features=False
        )
    return F.cross_entropy(logits(features), labels)
