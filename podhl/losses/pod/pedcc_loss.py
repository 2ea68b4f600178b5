"""PEDCC-Loss (Zhu et al., IEEE Access 2020; POD §2.2, eq. 2–4) on the frozen PEDCC. Logs ``am``, ``mse``.

    L_AM  = CE(s·(cos θ_j − m·[j = y]))                  (eq. 2, AM-Softmax on the PEDCC)
    L_MSE = (1/2N) Σ ‖x̃_i − p̃_{y_i}‖²  (x̃ normalized)   (eq. 3)
    L     = L_AM + λ·L_MSE^{1/n}                          (eq. 4, n = ``n_root``)

The defaults are the paper's form. The authors' code (ZLeopard/PEDCC-Loss) computes the MSE term
differently, in two places, each a switch (``loss=pedcc_official`` turns both on):

* ``mse_reduction="sum"``: ``tools/train_net.py`` @a7db70f (the newest change to that file, 2023-01-29:
  "must be sum, not the default mean") builds ``torch.nn.MSELoss(reduction='sum')``, i.e.
  Σ_i Σ_d (x̃_id − p̃_{y_i,d})² over the batch and the dimensions — 2N times eq. 3 (N = batch size).
  From 907ad7f (2019) until that commit it was ``MSELoss()``'s mean over N·d elements.
* ``n_form="power"``: ``engine/trainer.py`` @907ad7f (never changed since) raises the MSE to the power
  ``METRIC.N`` (``t_loss2 = t_loss2**cfg.METRIC.N``) where eq. 4 takes the n-th root; the two agree
  only at n = 1.

That code adds the term with weight 1 (no λ). So λ = 1 reproduces the code's *weight*, not its
value: with the paper's reduction the term is 2N times smaller than the code's (512 times at the
code's batch size N = 256).

Defaults and their sources: m = 0.5 (POD Table 4 runs "PEDCC-Loss(m = 0.5)"; also ``METRIC.M`` in
``config/defaults.py`` @907ad7f); s = 15 (``METRIC.S`` there; its ``configs/train_cifar100.yml`` uses
7.5 and 0.35); λ = 1 (eq. 4's weight; the code has none); n = 1 (``METRIC.N``). The AM-Softmax logits
are computed inline on the frozen PEDCC, as the code's ``AMSoftmax`` (``modeling/metric_loss.py``
@68537aa) does on normalized features and centroids; prediction is cosine argmax.
"""

from __future__ import annotations

import torch

from podhl.checks import in_range, one_of
from podhl.losses.pod.head import PEDCCCriterion
from podhl.losses.pod.math import MSE_REDUCTIONS, pedcc_am_loss, pedcc_mse_loss

N_FORMS = ("root", "power")  # L_MSE^{1/n} (eq. 4) | L_MSE^n (the authors' code)


class PEDCCLoss(PEDCCCriterion):
    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        s: float = 15.0,
        m: float = 0.5,
        lam: float = 1.0,
        n_root: float = 1.0,
        mse_reduction: str = "paper",
        n_form: str = "root",
        pedcc_seed: int = 0,
        pedcc_method: str = "auto",
        pedcc_file: str | None = None,
    ) -> None:
        checked = (in_range("s", s, 0.0, low_open=True), in_range("m", m, 0.0, 2.0, high_open=True),
                   in_range("lam", lam, 0.0), in_range("n_root", n_root, 1.0),
                   one_of("mse_reduction", mse_reduction, MSE_REDUCTIONS),
                   one_of("n_form", n_form, N_FORMS))  # before the PEDCC is generated
        super().__init__(num_classes, feat_dim, pedcc_seed=pedcc_seed, pedcc_method=pedcc_method,
                         pedcc_file=pedcc_file)
        self.s, self.m, self.lam, self.n_root, self.mse_reduction, self.n_form = checked

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        features = features.float()
        am = pedcc_am_loss(features, labels, self.unit_pedcc, self.s, self.m, centroids_normalized=True)
        mse = pedcc_mse_loss(features, labels, self.unit_pedcc, self.mse_reduction, centroids_normalized=True)
        exponent = 1.0 / self.n_root if self.n_form == "root" else self.n_root
        return {"loss": am + self.lam * mse ** exponent, "am": am, "mse": mse}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, s={self.s}, m={self.m}, lam={self.lam}, n_root={self.n_root}, "
                f"mse_reduction={self.mse_reduction}, n_form={self.n_form}")
