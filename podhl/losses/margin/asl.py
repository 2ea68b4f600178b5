"""ASL: SphereFace's angular softmax (A-Softmax), multiplicative angular margin m = 4.

Liu et al., CVPR 2017, §3.3 (equation numbers not checked: the paper's text was not available
here): normalized class weights, no bias, un-normalized features; logits
‖x‖·cos θ_j off-target and ‖x‖·ψ(θ_y) on target with ψ(θ) = (−1)^k cos(mθ) − 2k for
θ ∈ [kπ/m, (k+1)π/m] (continuous, decreasing). As in the official Caffe layer
(``margin_inner_product``: base 1000, gamma 0.12, power 1, lambda_min 5) training anneals from
softmax to A-Softmax with the target ‖x‖·(λ·cos θ_y + ψ(θ_y))/(1 + λ),
λ = max(5, 1000·(1 + 0.12·it)^−1), where ``it`` counts optimizer steps (a buffer, so resume
continues the schedule). Terms: ``ce`` and ``lambda``. Prediction: argmax of ‖x‖·cos θ_j.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from podhl.checks import in_range, integer
from podhl.losses.base import Criterion
from podhl.losses.margin.head import init_unit_rows
from podhl.losses.margin.math import fp32, scatter_target, sphereface_lambda, sphereface_psi


class ASoftmaxLoss(Criterion):
    def __init__(self, num_classes: int, feat_dim: int, m: int = 4, base: float = 1000.0, gamma: float = 0.12,
                 power: float = 1.0, lambda_min: float = 5.0) -> None:
        super().__init__(num_classes, feat_dim)
        self.m = integer("m", m, 1, 8)
        self.base = in_range("base", base, 0.0)
        self.gamma = in_range("gamma", gamma, 0.0)
        self.power = in_range("power", power, 0.0)
        self.lambda_min = in_range("lambda_min", lambda_min, 0.0)
        self.weight = nn.Parameter(torch.empty(num_classes, feat_dim))
        init_unit_rows(self.weight)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def current_lambda(self) -> float:
        return sphereface_lambda(int(self.iteration), self.base, self.gamma, self.power, self.lambda_min)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        x = fp32(features)
        return x @ F.normalize(fp32(self.weight), dim=1).to(x.dtype).t()  # ‖x‖·cos θ_j

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        x = fp32(features)
        norms = x.norm(dim=1)
        cosine = self.logits(x) / norms.clamp_min(1e-12).unsqueeze(1)
        lam = self.current_lambda()
        cos_y = cosine.gather(1, labels.view(-1, 1)).squeeze(1)
        target = (lam * cos_y + sphereface_psi(cos_y, self.m)) / (1.0 + lam)  # annealed ψ(θ_y)
        logits = norms.unsqueeze(1) * scatter_target(cosine, labels, target, 1.0)  # ‖x‖·(target | cos θ_j)
        ce = F.cross_entropy(logits, labels)
        return {"loss": ce, "ce": ce, "lambda": torch.tensor(lam)}

    def after_optimizer_step(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> None:
        self.iteration += 1

    def epoch_metrics(self) -> dict[str, float]:
        return {"lambda": self.current_lambda()}

    def extra_repr(self) -> str:
        lam = f"max({self.lambda_min:g}, {self.base:g}(1+{self.gamma:g}it)^-{self.power:g})"
        return f"{super().extra_repr()}, m={self.m}, lambda={lam}"
