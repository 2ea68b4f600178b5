"""PEDCC-Loss (Zhu et al., IEEE Access 2020; POD §2.2, eq. 2–4) on the frozen PEDCC: ``PEDCCLoss``.

The authors' code (ZLeopard/PEDCC-Loss) computes the MSE term differently, in two places, each a
switch (``loss=pedcc_official`` turns both on): ``tools/train_net.py`` @a7db70f (the newest change to
that file, 2023-01-29: "must be sum, not the default mean") builds ``torch.nn.MSELoss(reduction='sum')``
(from 907ad7f, 2019, until that commit it was ``MSELoss()``'s mean over N·d elements), and
``engine/trainer.py`` @907ad7f (never changed since) raises the MSE to the power ``METRIC.N``
(``t_loss2 = t_loss2**cfg.METRIC.N``) where eq. 4 takes the n-th root; the two agree only at n = 1.
That code adds the term with weight 1 (no λ), so λ = 1 reproduces the code's *weight*, not its value:
with the paper's reduction the term is 2N times smaller than the code's (512 times at its batch
size N = 256). The AM-Softmax logits are computed inline on the frozen PEDCC, as the code's
``AMSoftmax`` (``modeling/metric_loss.py`` @68537aa) does on normalized features and centroids.
"""

from __future__ import annotations

import torch

from podhl.checks import in_range, one_of
from podhl.losses.pod.head import PEDCCCriterion
from podhl.losses.pod.math import MSE_REDUCTIONS, pedcc_am_loss, pedcc_mse_loss

N_FORMS = ("root", "power")  # L_MSE^{1/n} (eq. 4) | L_MSE^n (the authors' code)


class PEDCCLoss(PEDCCCriterion):
    r"""PEDCC-Loss: AM-Softmax on the frozen PEDCC plus a root of the MSE to the centroids (POD eq. 2–4).

    $$L = L_{\mathrm{AM}} + \lambda\, L_{\mathrm{MSE}}^{1/n}, \qquad
    L_{\mathrm{AM}} = \mathrm{CE}\big(s(\cos\theta_j - m[j = y]),\ y\big), \qquad
    L_{\mathrm{MSE}} = \frac{1}{2N}\sum_i \lVert \tilde x_i - \tilde p_{y_i}\rVert^2$$

    (Zhu et al., IEEE Access 2020, as restated in the POD paper §2.2: eq. 4, with eq. 2 and eq. 3),
    $\tilde x$ the normalized feature. Prediction is cosine argmax. Config: ``loss=pedcc``; the
    authors' code's MSE term: ``loss=pedcc_official`` (module docstring). Defaults: ZLeopard/PEDCC-Loss
    ``config/defaults.py`` @907ad7f.

    Args:
        num_classes: $k$, number of classes (PEDCC points).
        feat_dim: $n$, latent feature dimension.
        s: $s > 0$, scale of the AM-Softmax logits. Default 15: ``METRIC.S`` (its
            ``configs/train_cifar100.yml`` uses 7.5).
        m: $m \in [0, 2)$, additive margin on the cosine (unitless). Default 0.5: POD Table 4
            "PEDCC-Loss (m = 0.5)" (= ``METRIC.M``).
        lam: $\lambda \ge 0$, weight of the MSE term (POD §2.2 gives no value). Default 1: the code's
            weight (``t_loss1 + t_loss2``).
        n_root: $n \ge 1$ of eq. 4 (POD §2.2 gives no value). Default 1: ``METRIC.N``.
        mse_reduction: ``"paper"`` (default, eq. 3); ``"sum"``: summed over batch and dimensions,
            $2N$ times eq. 3 (``tools/train_net.py`` @a7db70f).
        n_form: ``"root"`` (default, eq. 4): $L_{\mathrm{MSE}}^{1/n}$; ``"power"``: $L_{\mathrm{MSE}}^n$
            (``engine/trainer.py`` @907ad7f).
        pedcc_seed: seed of the PEDCC construction. Default 0 (podhl's choice, see
            ``podhl.losses.pod.cosine.CosineLoss``).
        pedcc_method: PEDCC construction. Default ``"auto"`` (podhl's choice).
        pedcc_file: centroids to load instead of generating them. Default None (see ``CosineLoss``).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated), ``am`` ($L_{\mathrm{AM}}$) and
            ``mse`` ($L_{\mathrm{MSE}}$ before the root and $\lambda$).
        logits (torch.Tensor): $(B, k)$ cosines to the PEDCC points; argmax = prediction (eq. 21–24).
    """

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
        checked = (
            in_range("s", s, 0.0, low_open=True),
            in_range("m", m, 0.0, 2.0, high_open=True),
            in_range("lam", lam, 0.0),
            in_range("n_root", n_root, 1.0),
            one_of("mse_reduction", mse_reduction, MSE_REDUCTIONS),
            one_of("n_form", n_form, N_FORMS),
        )  # before the PEDCC is generated
        super().__init__(num_classes, feat_dim, pedcc_seed=pedcc_seed, pedcc_method=pedcc_method, pedcc_file=pedcc_file)
        self.s, self.m, self.lam, self.n_root, self.mse_reduction, self.n_form = checked

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        features = features.float()
        am = pedcc_am_loss(features, labels, self.unit_pedcc, self.s, self.m, centroids_normalized=True)
        mse = pedcc_mse_loss(features, labels, self.unit_pedcc, self.mse_reduction, centroids_normalized=True)
        exponent = 1.0 / self.n_root if self.n_form == "root" else self.n_root
        return {"loss": am + self.lam * mse**exponent, "am": am, "mse": mse}

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, s={self.s}, m={self.m}, lam={self.lam}, n_root={self.n_root}, "
            f"mse_reduction={self.mse_reduction}, n_form={self.n_form}"
        )
