"""POD Loss (POD §3.4, eq. 20): L_NaC + λ·L_SC on the frozen PEDCC. Logs ``nac`` and ``sc``.

NaC (eq. 16–17) with the adaptive δ(e, M) = α·e·M is inherited from :class:`NaCLoss` (its switches
apply here too). SC (eq. 18–19): Σ_{i≠j} R_ij², R = ZᵀZ/(B−1), Z_b = x_b/‖x_b‖ − p̃_{y_b}.
Official-code switch: ``sc_divide_by_n_minus_1=True`` divides SC by (n−1). Defaults α=0.01, λ=1.
"""

from __future__ import annotations

import torch

from podhl.checks import in_range, one_of
from podhl.losses.pod.math import sc_loss
from podhl.losses.pod.nac import NaCLoss


class PODLoss(NaCLoss):
    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        alpha: float = 0.01,
        lam: float = 1.0,
        sc_divide_by_n_minus_1: bool = False,
        **nac_kwargs,
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
