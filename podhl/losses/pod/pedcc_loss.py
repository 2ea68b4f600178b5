"""PEDCC-Loss (Zhu et al., IEEE Access 2020; POD §2.2, eq. 2–4) on the frozen PEDCC. Logs ``am``, ``mse``.

    L_AM  = CE(s·(cos θ_j − m·[j = y]))                  (eq. 2, AM-Softmax on the PEDCC)
    L_MSE = (1/2N) Σ ‖x̃_i − p̃_{y_i}‖²  (x̃ normalized)   (eq. 3)
    L     = L_AM + λ·L_MSE^{1/n_root}                     (eq. 4)

Defaults and their sources: m = 0.5 (POD Table 4 runs "PEDCC-Loss(m = 0.5)"); s = 15 (the
official PEDCC-Loss code, ZLeopard/PEDCC-Loss ``config/defaults.py``: METRIC.S = 15.0 with
METRIC.M = 0.5); λ = 1 (that code adds the MSE term unweighted); n_root = 1 (its METRIC.N = 1).
The AM-Softmax logits are computed inline on the frozen PEDCC; prediction is cosine argmax.
"""

from __future__ import annotations

import torch

from podhl.checks import in_range
from podhl.losses.pod.head import PEDCCCriterion
from podhl.losses.pod.math import pedcc_am_loss, pedcc_mse_loss


class PEDCCLoss(PEDCCCriterion):
    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        s: float = 15.0,
        m: float = 0.5,
        lam: float = 1.0,
        n_root: float = 1.0,
        pedcc_seed: int = 0,
        pedcc_method: str = "auto",
    ) -> None:
        checked = (in_range("s", s, 0.0, low_open=True), in_range("m", m, 0.0, 2.0, high_open=True),
                   in_range("lam", lam, 0.0), in_range("n_root", n_root, 1.0))  # before the PEDCC is generated
        super().__init__(num_classes, feat_dim, pedcc_seed=pedcc_seed, pedcc_method=pedcc_method)
        self.s, self.m, self.lam, self.n_root = checked

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        features = features.float()
        am = pedcc_am_loss(features, labels, self.pedcc, self.s, self.m)
        mse = pedcc_mse_loss(features, labels, self.pedcc)
        return {"loss": am + self.lam * mse ** (1.0 / self.n_root), "am": am, "mse": mse}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, s={self.s}, m={self.m}, lam={self.lam}, n_root={self.n_root}"
