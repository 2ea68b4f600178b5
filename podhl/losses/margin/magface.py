"""MagFace: magnitude-aware angular margin plus a magnitude regularizer.

Meng, Zhao, Huang & Zhou, CVPR 2021, §3.2 (eq. 3): L = CE(s·[cos θ_j; cos(θ_y + m(a))]) + λ_g·g(a),
a = ‖x‖ clamped to [l_a, u_a] (as the official code does, so g and m(a) are flat outside),
m(a) = (u_m − l_m)/(u_a − l_a)·(a − l_a) + l_m, g(a) = 1/a + a/u_a². Official values: s = 64,
l_a = 10, u_a = 110, l_m = 0.45, u_m = 0.8, λ_g = 35 (paper §4 and the official repository's
training script). The margin is per sample, gradients flow through m(a) into ‖x‖.

Past θ_y = π − m(a) the target logit uses the shared continuous, monotone fallback
(:func:`podhl.losses.margin.math.monotone_fallback`); ``easy_margin=true`` instead reproduces the official
``MagLinear`` default (target cos θ_y unchanged where cos θ_y ≤ 0). Terms: ``ce``, ``g`` (mean g(a),
unweighted), ``margin`` (mean m(a)).
"""

from __future__ import annotations

import math

import torch

from podhl.checks import in_range, one_of
from podhl.losses.margin.head import MarginHead
from podhl.losses.margin.math import angle, fp32, magface_g, magface_margin, monotone_fallback


class MagFaceLoss(MarginHead):
    def __init__(self, num_classes: int, feat_dim: int, scale: float = 64.0, l_a: float = 10.0, u_a: float = 110.0,
                 l_m: float = 0.45, u_m: float = 0.8, lambda_g: float = 35.0, easy_margin: bool = False) -> None:
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
        return (f"{super().extra_repr()}, a∈[{self.l_a:g}, {self.u_a:g}], m∈[{self.l_m:g}, {self.u_m:g}], "
                f"lambda_g={self.lambda_g:g}, easy_margin={self.easy_margin}")
