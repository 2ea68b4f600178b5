"""POD Loss (Zhu & Zu, POD §3.4, eq. 20): NaC plus the SC decorrelation term on the frozen PEDCC,
``PODLoss``."""

from __future__ import annotations

from typing import Any

import torch

from podhl.checks import in_range, one_of
from podhl.losses.pod.math import sc_loss
from podhl.losses.pod.nac import NaCLoss


class PODLoss(NaCLoss):
    r"""POD Loss: NaC Loss plus $\lambda$ times the self-correlation (SC) term (POD eq. 20).

    $$L_{\mathrm{POD}} = L_{\mathrm{NaC}} + \lambda\, L_{\mathrm{SC}}, \qquad
    L_{\mathrm{SC}} = \sum_{i \ne j} R_{ij}^2, \quad R = \frac{Z^\top Z}{B - 1}, \quad
    Z_b = \frac{x_b}{\lVert x_b\rVert} - \tilde p_{y_b}$$

    (Zhu & Zu, POD Loss, §3.4, eq. 20; SC eq. 18–19; NaC eq. 16–17 with the adaptive
    $\delta(e, M) = \alpha e M$, inherited from ``podhl.losses.pod.nac.NaCLoss`` with its
    switches). Config: ``loss=pod`` (Fig. 6 presets ``pod_alpha_0``, ``pod_alpha_0_1``).

    Args:
        num_classes: $k$, number of classes (PEDCC points).
        feat_dim: $n$, latent feature dimension.
        alpha: $\alpha \ge 0$ of $\delta(e, M) = \alpha e M$. Default 0.01: POD §4.2.5 ("α and λ
            ... are set to 0.01 and 1").
        lam: $\lambda \ge 0$, weight of SC (unitless). Default 1: POD §4.2.5 and Fig. 6.
        sc_divide_by_n_minus_1: False (default, eq. 18–19); True: SC divided by $n - 1$, as the
            official code (TianYuZu/POD-Loss ``train.py`` @3237322).
        **nac_kwargs: the other ``podhl.losses.pod.nac.NaCLoss`` parameters, same
            defaults: ``initial_m`` (0.05), ``norm_source``, ``denominator``, ``delta_schedule``,
            ``pedcc_seed`` (0), ``pedcc_method`` (``"auto"``).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated), ``nac`` and ``sc`` (unweighted).
        logits (torch.Tensor): $(B, k)$ cosines to the PEDCC points; argmax = prediction (eq. 21–24).
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        alpha: float = 0.01,
        lam: float = 1.0,
        sc_divide_by_n_minus_1: bool = False,
        **nac_kwargs: Any,
    ) -> None:
        lam = in_range("lam", lam, 0.0)  # paper: 1
        divide = one_of("sc_divide_by_n_minus_1", sc_divide_by_n_minus_1, (False, True))
        super().__init__(num_classes, feat_dim, alpha=alpha, **nac_kwargs)
        self.lam = lam
        self.sc_divide_by_n_minus_1 = bool(divide)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        features = features.float()
        nac = self.nac(features, labels)
        sc = sc_loss(features, labels, self.unit_pedcc, self.sc_divide_by_n_minus_1, centroids_normalized=True)
        return {"loss": nac + self.lam * sc, "nac": nac, "sc": sc}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lam={self.lam}, sc_divide_by_n_minus_1={self.sc_divide_by_n_minus_1}"
