"""MagFace (Meng, Zhao, Huang & Zhou, CVPR 2021, §3.2, eq. 3): magnitude-aware angular margin plus a
magnitude regularizer, ``MagFaceLoss``, with the official repository's values (IrvingMeng/MagFace).
"""

from __future__ import annotations

import math

import torch

from podhl.checks import in_range, one_of
from podhl.losses.margin.head import MarginHead
from podhl.losses.margin.math import angle, fp32, magface_g, magface_margin, monotone_fallback


class MagFaceLoss(MarginHead):
    r"""MagFace: a per-sample angular margin $m(a)$ growing with the feature norm, plus $\lambda_g\, g(a)$.

    $$L = \mathrm{CE}\big(s\cdot[\cos\theta_j\ (j \ne y);\ \cos(\theta_y + m(a))\ (j = y)],\ y\big)
    + \lambda_g\, \overline{g(a)}$$

    $$m(a) = \frac{u_m - l_m}{u_a - l_a}(a - l_a) + l_m, \qquad g(a) = \frac{1}{a} + \frac{a}{u_a^2}$$

    (Meng et al., CVPR 2021, §3.2, eq. 3), $a = \lVert x\rVert$ clamped to $[l_a, u_a]$ as the official
    code does (so $m$ and $g$ are flat outside); gradients flow through $m(a)$ into $\lVert x\rVert$.
    Past $\theta_y = \pi - m(a)$ the target logit follows the continuous, monotone fallback
    (``podhl.losses.margin.math.monotone_fallback``). Config: ``loss=magface``. The defaults are
    IrvingMeng/MagFace ``run/run.sh`` @2952266.

    Args:
        num_classes: $C$, number of classes (rows of $W$, $C \times d$).
        feat_dim: $d$, feature dimension.
        scale: $s > 0$, scale of the logits. Default 64 (``--arc-scale 64``).
        l_a: $l_a > 0$, lower bound of the feature magnitude (feature-norm units). Default 10 (``la=10``).
        u_a: $u_a > l_a$, upper bound of the magnitude, where $g$ is minimal. Default 110 (``ua=110``).
        l_m: $l_m \in [0, \pi)$, margin at $a = l_a$, radians. Default 0.45 (``lm=0.45``).
        u_m: $u_m \in [l_m, \pi)$, margin at $a = u_a$, radians. Default 0.8 (``um=0.8``).
        lambda_g: $\lambda_g \ge 0$, weight of $g(a)$. Default 35 (``lg=35``; ``run/trainer.py``
            @e56dde2's argparse default is 20).
        easy_margin: False (default, podhl's choice): the continuous monotone fallback; True: the
            official ``MagLinear(easy_margin=True)`` (``models/magface.py`` @719001a), target
            $\cos\theta_y$ unchanged where $\cos\theta_y \le 0$.

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated), ``ce``, ``g`` (mean $g(a)$,
            unweighted) and ``margin`` (mean $m(a)$, radians).
        logits (torch.Tensor): $(B, C)$ scores $s\cos\theta_j$ without margin; argmax = prediction.
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        scale: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(num_classes, feat_dim, scale)
        self.l_a = in_range("l_a", l_a, 0.0, low_open=True)
        self.u_a = in_range("u_a", u_a, self.l_a, low_open=True)
        self.l_m = in_range("l_m", l_m, 0.0, math.pi, high_open=True)
        self.u_m = in_range("u_m", u_m, self.l_m, math.pi, high_open=True)
        self.lambda_g = in_range("lambda_g", lambda_g, 0.0)
        self.easy_margin = bool(one_of("easy_margin", easy_margin, (False, True)))

    def target(self, cos_y: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
        """cos(θ_y + m(a)) with the per-sample margin m(a) (B,); official easy margin: cos θ_y where cos θ_y ≤ 0."""
        phi = angle(cos_y) + margin  # θ_y + m(a)
        target = monotone_fallback(torch.cos(phi), cos_y, phi, m2=margin)
        return torch.where(cos_y <= 0, cos_y, target) if self.easy_margin else target

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        x = fp32(features)
        a = x.norm(dim=1).clamp(self.l_a, self.u_a)
        margin = magface_margin(a, self.l_a, self.u_a, self.l_m, self.u_m)
        ce = self.margin_ce(x, labels, margin=margin)
        g = magface_g(a, self.u_a).mean()
        return {"loss": ce + self.lambda_g * g, "ce": ce, "g": g, "margin": margin.mean().detach()}

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, a∈[{self.l_a:g}, {self.u_a:g}], m∈[{self.l_m:g}, {self.u_m:g}], "
            f"lambda_g={self.lambda_g:g}, easy_margin={self.easy_margin}"
        )
