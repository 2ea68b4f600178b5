"""ASL: SphereFace's angular softmax (A-Softmax, Liu et al., CVPR 2017, §3.3; equation numbers not
checked), ``ASoftmaxLoss``, annealed as the authors' Caffe layer does.

``backward=caffe``: the Caffe layer's hand-written backward (wy1iu/sphereface
``margin_inner_product_layer.cpp`` @966c44c), which differs from autograd's in two ways (same forward):

* d/dx of the target logit's ψ part: the exact gradient is (ψ'(c)·ŵ_y + (ψ(c) − c·ψ'(c))·x/‖x‖)/(1 + λ)
  (c = cos θ_y); Caffe divides both coefficients (``coeff_w``, ``coeff_x`` = the x coefficient over ‖x‖)
  by sqrt(coeff_w² + coeff_x²), a per-sample rescaling (the λ part and the off-target logits are exact);
* d/dW: Caffe back-propagates Σ_i top_diff_ij·x_i to its weight blob, as a plain inner product would —
  no ψ, no 1/(1 + λ) mixing, no Jacobian of the normalization — and normalizes the blob in place at the
  next forward. Here the same gradient reaches ``weight`` and ``after_optimizer_step`` renormalizes its
  rows in place (done after the step because ``forward`` must not change state).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from podhl.checks import in_range, integer, one_of
from podhl.losses.base import Criterion
from podhl.losses.margin.head import init_unit_rows
from podhl.losses.margin.lean_ce import normalized_margin_cross_entropy
from podhl.losses.margin.math import (
    chebyshev_cos_derivative,
    fp32,
    scatter_target,
    sphereface_lambda,
    sphereface_psi,
    sphereface_sign_k,
)

BACKWARDS = ("exact", "caffe")


class _CaffeMarginInnerProduct(torch.autograd.Function):
    """SphereFace's ``MarginInnerProduct`` layer: forward as the exact form, backward as Caffe's."""

    @staticmethod
    def forward(ctx, x, weight, labels, lam: float, m: int):
        w = F.normalize(weight, dim=1)
        logits = x @ w.t()  # x·ŵ_j = ‖x‖·cos θ_j
        norms = x.norm(dim=1).clamp_min(1e-12)
        cos_y = (logits.gather(1, labels.view(-1, 1)).squeeze(1) / norms).clamp(-1.0, 1.0)
        target = (lam * cos_y + sphereface_psi(cos_y, m)) / (1.0 + lam) * norms
        ctx.save_for_backward(x, w, labels, norms, cos_y)
        ctx.lam, ctx.m = lam, m
        return logits.scatter(1, labels.view(-1, 1), target.unsqueeze(1))

    @staticmethod
    def backward(ctx, grad):
        x, w, labels, norms, c = ctx.saved_tensors
        lam, m = ctx.lam, ctx.m
        sign, _ = sphereface_sign_k(c, m)
        coeff_w = sign * chebyshev_cos_derivative(c, m)  # ψ'(c)
        coeff_x = (sphereface_psi(c, m) - c * coeff_w) / norms  # (ψ − c·ψ')/‖x‖, the coefficient of x
        scale = torch.sqrt(coeff_w.square() + coeff_x.square()).clamp_min(1e-30)  # Caffe's coeff_norm
        g_y = grad.gather(1, labels.view(-1, 1)).squeeze(1)
        w_y = w[labels]
        grad_x = grad @ w  # every logit's x·ŵ_j part with weight 1 = 1/(1+λ) + λ/(1+λ)
        grad_x = grad_x + (g_y / (1.0 + lam)).unsqueeze(1) * (
            (coeff_w / scale).unsqueeze(1) * w_y + (coeff_x / scale).unsqueeze(1) * x - w_y
        )
        grad_w = grad.t() @ x  # Caffe: Σ_i top_diff_ij·x_i, as for a plain inner product
        return grad_x, grad_w, None, None, None


class ASoftmaxLoss(Criterion):
    r"""A-Softmax (SphereFace): multiplicative angular margin $m$ on un-normalized features, annealed.

    Normalized class weights, no bias, un-normalized features $x$; off-target logits
    $\lVert x\rVert\cos\theta_j$, target logit (Liu et al., CVPR 2017, §3.3, and the authors' Caffe
    layer's annealing; no equation number: the paper's text was not available here)

    $$\lVert x\rVert\,\frac{\lambda\cos\theta_y + \psi(\theta_y)}{1 + \lambda}, \qquad
    \psi(\theta) = (-1)^k\cos(m\theta) - 2k,\ \theta \in \big[\tfrac{k\pi}{m}, \tfrac{(k+1)\pi}{m}\big]$$

    $$\lambda = \max\big(\lambda_{\min},\ \mathrm{base}\cdot(1 + \gamma\cdot it)^{-\mathrm{power}}\big)$$

    and cross-entropy. As in wy1iu/sphereface ``margin_inner_product_layer.cpp`` @966c44c (counter
    incremented before $\lambda$ is computed), the $k$-th optimizer step (0-based) uses $it = k + 1$:
    $\lambda$ = 892.9, 806.5, 735.3, ..., reaching $\lambda_{\min} = 5$ at step 1658. ``iteration``
    (a buffer, so resume continues the sequence) counts optimizer steps; ``forward`` never changes it.
    With $\lambda = 0$ this is pytorch-metric-learning's ``SphereFaceLoss``. Config: ``loss=asl``;
    the defaults are ``train/code/sphereface_model.prototxt`` @7f9acb1.

    Args:
        num_classes: $C$, number of classes (rows of $W$, $C \times d$).
        feat_dim: $d$, feature dimension.
        m: integer margin in $[1, 8]$, multiple of the target angle. Default 4 (``type: QUADRUPLE``).
        base: $\ge 0$, $\lambda$'s starting scale (unitless). Default 1000 (``base: 1000``).
        gamma: $\gamma \ge 0$, decay rate per optimizer step. Default 0.12 (``gamma: 0.12``).
        power: $\ge 0$, decay exponent. Default 1 (``power: 1``).
        lambda_min: $\lambda_{\min} \ge 0$, floor of $\lambda$. Default 5 (``lambda_min: 5``).
        backward: ``"exact"`` (default, podhl's choice): autograd's gradient of the loss it reports;
            ``"caffe"``: the Caffe layer's hand-written backward (module docstring).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated), ``ce`` (the same
            cross-entropy) and ``lambda`` (the step's $\lambda$).
        logits (torch.Tensor): $(B, C)$ scores $\lVert x\rVert\cos\theta_j$; argmax = prediction.
    """

    lean = True  # exact backward through normalized_margin_cross_entropy; False: reference_ce (plain autograd)

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        m: int = 4,
        base: float = 1000.0,
        gamma: float = 0.12,
        power: float = 1.0,
        lambda_min: float = 5.0,
        backward: str = "exact",
    ) -> None:
        super().__init__(num_classes, feat_dim)
        self.m = integer("m", m, 1, 8)
        self.base = in_range("base", base, 0.0)
        self.gamma = in_range("gamma", gamma, 0.0)
        self.power = in_range("power", power, 0.0)
        self.lambda_min = in_range("lambda_min", lambda_min, 0.0)
        self.backward_mode = one_of("backward", backward, BACKWARDS)
        self.weight = nn.Parameter(torch.empty(num_classes, feat_dim))
        init_unit_rows(self.weight)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))  # optimizer steps taken

    def current_lambda(self) -> float:
        """λ of the next training step: Caffe's counter after its pre-increment, it = steps taken + 1."""
        return sphereface_lambda(int(self.iteration) + 1, self.base, self.gamma, self.power, self.lambda_min)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        x = fp32(features)
        return x @ F.normalize(fp32(self.weight), dim=1).to(x.dtype).t()  # ‖x‖·cos θ_j

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        x = fp32(features)
        lam = self.current_lambda()
        if self.backward_mode == "caffe":
            logits = _CaffeMarginInnerProduct.apply(x, fp32(self.weight).to(x.dtype), labels, lam, self.m)
            ce = F.cross_entropy(logits, labels)
        elif not self.lean:
            ce = self.reference_ce(x, labels, lam)
        else:  # the same loss, one (B, C) buffer (podhl.losses.margin.lean_ce): logits ‖x‖cos θ_j = x·Ŵ_j

            def psi(logit_y: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:  # ‖x‖·ψ̃(θ_y) from x·Ŵ_y
                cos_y = logit_y / norms.clamp_min(1e-12)
                return norms * (lam * cos_y + sphereface_psi(cos_y, self.m)) / (1.0 + lam)  # annealed ψ(θ_y)

            w = fp32(self.weight).to(x.dtype)
            ce = normalized_margin_cross_entropy(x, w, labels, psi, 1.0, (x.norm(dim=1),), normalize_features=False)
        return {"loss": ce, "ce": ce, "lambda": torch.tensor(lam)}

    def reference_ce(self, x: torch.Tensor, labels: torch.Tensor, lam: float) -> torch.Tensor:
        """The exact-backward loss by the readable formula and plain autograd (``lean = False``)."""
        norms = x.norm(dim=1)
        cosine = self.logits(x) / norms.clamp_min(1e-12).unsqueeze(1)
        cos_y = cosine.gather(1, labels.view(-1, 1)).squeeze(1)
        target = (lam * cos_y + sphereface_psi(cos_y, self.m)) / (1.0 + lam)  # annealed ψ(θ_y)
        logits = norms.unsqueeze(1) * scatter_target(cosine, labels, target, 1.0)  # ‖x‖·(target | cos θ_j)
        return F.cross_entropy(logits, labels)

    def after_optimizer_step(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> None:
        self.iteration += 1
        if self.backward_mode == "caffe":  # the layer normalizes its weight blob in place at each forward
            self.weight.copy_(F.normalize(self.weight, dim=1))

    def epoch_metrics(self) -> dict[str, float]:
        return {"lambda": self.current_lambda()}

    def extra_repr(self) -> str:
        lam = f"max({self.lambda_min:g}, {self.base:g}(1+{self.gamma:g}it)^-{self.power:g}), it = step + 1"
        return f"{super().extra_repr()}, m={self.m}, lambda={lam}, backward={self.backward_mode}"
