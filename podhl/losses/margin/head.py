"""The normalized-classifier margin head shared by am, arc, cm, mml, er and magface.

A learnable W (C × d) whose rows are L2-normalized in every forward, so the classifier scores are
cosines cos θ_j = ⟨x/‖x‖, W_j/‖W_j‖⟩. A ``MarginHead`` takes cross-entropy of

    L = CE(s·[cos θ_j (j ≠ y);  ψ(θ_y) (j = y)], y)

where each preset's file defines its target ψ in ``MarginHead.target`` (ArcFace: cos(θ_y + m), ...).
Prediction is the argmax of s·cos θ (no margin at test time). Everything runs in fp32.

Scale s. am/arc/cm/mml default to s = 30, AM-Softmax's value (Wang et al. SPL 2018; the POD
paper's AM-Softmax baseline); neither POD nor HL states s. ArcFace/CosFace use 64, tuned for
10k-85k-identity face sets; CosFace's bound s ≥ (C−1)/C·ln((C−1)·P/(1−P)) is ≈ 6 for C = 10 and
≈ 11.5 for C = 1000 at P = 0.99, so 30 is ample for these small-scale sets, and it trains markedly
faster from scratch: on digits (small CNN, ``schedule=quick``, 8 epochs) ArcFace reaches 100 % test
accuracy with s = 30 but 48 % with s = 64. ``loss.scale=64`` restores the face-recognition value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from podhl.checks import in_range
from podhl.losses.base import Criterion
from podhl.losses.margin.lean_ce import normalized_margin_cross_entropy
from podhl.losses.margin.math import fp32, scatter_target


def init_unit_rows(weight: torch.Tensor) -> None:
    """Random directions with unit norm: only directions matter, and the gradient of W/‖W‖ scales as
    1/‖W‖, so unit rows keep the step size independent of feat_dim (a 0.01-std init inflates it by
    1/(0.01·√d))."""
    with torch.no_grad():
        weight.normal_()
        weight.div_(weight.norm(dim=1, keepdim=True))


class NormalizedClassifier(Criterion):
    r"""Learnable class weights $W$ ($C \times d$, unit-norm random rows at start), rows L2-normalized in
    every forward; scores $s\cos\theta_j$. The base of every margin head.

    Args:
        num_classes: $C$, number of classes.
        feat_dim: $d$, feature dimension.
        scale: $s > 0$, scale of the logits. Default 64 (the ArcFace/CosFace papers'); the presets
            pass their own (module docstring: "Scale s").
    """

    def __init__(self, num_classes: int, feat_dim: int, scale: float = 64.0) -> None:
        super().__init__(num_classes, feat_dim)
        self.scale = in_range("scale", scale, 0.0, low_open=True)
        self.weight = nn.Parameter(torch.empty(num_classes, feat_dim))
        init_unit_rows(self.weight)

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C) cosines between the features and the class weights, fp32."""
        x = F.normalize(fp32(features), dim=1)
        w = F.normalize(fp32(self.weight), dim=1).to(x.dtype)
        return x @ w.t()

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        r"""$(B, C)$ scores $s\cos\theta_j$, fp32, without margin; argmax = prediction."""
        return self.scale * self.cosine(features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale:g}"


class MarginHead(NormalizedClassifier):
    r"""Cross-entropy of $s\cdot[\cos\theta_j\ (j \ne y);\ \psi(\theta_y)\ (j = y)]$; subclasses define
    the target $\psi$ in ``target`` (ArcFace: $\cos(\theta_y + m)$, ...).

    Args:
        num_classes: $C$, number of classes.
        feat_dim: $d$, feature dimension.
        scale: $s > 0$, scale of the logits. Default 64.

    Attributes (set on an instance, not config keys):
        lean: True (default): the loss through ``normalized_margin_cross_entropy`` (one (B, C) buffer);
            False: the reference autograd formula (about ten (B, C)-sized tensors kept at d = 2B).
        chunk_size: None (default) or classes per chunk for ``normalized_margin_cross_entropy``
            (no (B, C) buffer; one more matrix product).
    """

    lean: bool = True
    chunk_size: int | None = None

    def target(self, cos_y: torch.Tensor, **kwargs) -> torch.Tensor:
        """The target logit before the scale, from cos θ_y (B,) (fp32 or fp64)."""
        raise NotImplementedError

    def margin_logits(self, cosine: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        """(B, C) training logits from a (B, C) cosine matrix; ``kwargs`` go to ``target``."""
        cosine = fp32(cosine)
        cos_y = cosine.gather(1, labels.view(-1, 1)).squeeze(1)
        return scatter_target(cosine, labels, self.target(cos_y, **kwargs), self.scale)

    def margin_ce(self, features: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        """Mean cross-entropy of ``margin_logits`` (a scalar); ``kwargs`` (tensors) go to ``target``.

        Computed by ``podhl.losses.margin.lean_ce.normalized_margin_cross_entropy`` (one (B, C) buffer
        for backward, or none with ``chunk_size``), equal in value and gradient to
        ``reference_margin_ce``; ``lean = False`` on an instance restores the reference path.
        """
        if not self.lean:
            return self.reference_margin_ce(features, labels, **kwargs)
        x = fp32(features)
        names = list(kwargs)

        def psi(cos_y: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
            return self.target(cos_y, **dict(zip(names, args, strict=True)))

        w = fp32(self.weight).to(x.dtype)
        args = tuple(kwargs.values())
        return normalized_margin_cross_entropy(x, w, labels, psi, self.scale, args, chunk_size=self.chunk_size)

    def reference_margin_ce(self, features: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        """``F.cross_entropy(margin_logits(cosine(features)), labels)``: the readable formula, plain autograd."""
        return F.cross_entropy(self.margin_logits(self.cosine(features), labels, **kwargs), labels)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        """``{"loss": ce, "ce": ce}``, the cross-entropy with the margin (``step`` is unused)."""
        ce = self.margin_ce(features, labels)
        return {"loss": ce, "ce": ce}
