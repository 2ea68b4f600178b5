"""Cosine Loss (POD §3.1.1, eq. 9–11) on the frozen PEDCC: ``CosineLoss``."""

from __future__ import annotations

import torch

from podhl.losses.pod.head import PEDCCCriterion
from podhl.losses.pod.math import cosine_loss


class CosineLoss(PEDCCCriterion):
    r"""Cosine Loss: squared cosine distance of the latent feature to its class PEDCC centroid (POD eq. 9).

    $$L_{\mathrm{Cosine}} = \frac{1}{N}\sum_i \big(1 - \cos\theta_{y_i}\big)^2, \qquad
    \cos\theta_{y_i} = \frac{x_i\cdot\tilde p_{y_i}}{\lVert x_i\rVert + \varepsilon}$$

    (Zhu & Zu, POD Loss, §3.1.1, eq. 9, with eq. 10–11, $\varepsilon = 10^{-12}$), $x$ the latent
    feature (not normalized by the model), $\tilde p$ the normalized frozen PEDCC (POD §2.1).
    Config: ``loss=cosine``.

    Args:
        num_classes: $k$, number of classes (PEDCC points).
        feat_dim: $n$, latent feature dimension.
        pedcc_seed: seed of the PEDCC construction. Default 0: podhl's choice (the PEDCC is
            predefined, POD §2.1, so a fixed seed, not the run's).
        pedcc_method: PEDCC construction, ``"auto"`` (default, podhl's choice: the best of podhl's
            constructions for $(k, n)$; the exact simplex when $k \le n + 1$), ``"simplex"``,
            ``"simplices"``, ``"mub"``, ``"bch"`` or ``"physical"`` (``podhl.pedcc``).
        pedcc_file: a ``.pt``/``.npy`` file with the $(k, n)$ centroids to use instead, e.g. another run's
            ``pedcc.pt`` (every run writes one). Default None: generate them (the same on every machine).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated) and ``cosine``, the same value.
        logits (torch.Tensor): $(B, k)$ cosines to the PEDCC points; argmax = prediction (eq. 21–24).
    """

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        loss = cosine_loss(features.float(), labels, self.unit_pedcc, centroids_normalized=True)
        return {"loss": loss, "cosine": loss}
