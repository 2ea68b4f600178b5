"""ArcFace (Deng, Guo, Xue & Zafeiriou, CVPR 2019, eq. 3): additive angular margin on a normalized
classifier, ``ArcFaceLoss`` (formula, parameters and sources in its docstring)."""

from __future__ import annotations

import math

import torch

from podhl.checks import in_range
from podhl.errors import ConfigError
from podhl.losses.margin.head import MarginHead
from podhl.losses.margin.math import angle, monotone_fallback


class ArcFaceLoss(MarginHead):
    r"""ArcFace: additive angular margin $m$ on the target angle (Deng et al., CVPR 2019, eq. 3).

    $$L = \mathrm{CE}\big(s\cdot[\cos\theta_j\ (j \ne y);\ \cos(\theta_y + m)\ (j = y)],\ y\big)$$

    with $\cos\theta_j$ between the feature and the L2-normalized class weight $W_j$. Past
    $\theta_y = \pi - m$, where $\theta_y + m$ would leave $[0, \pi]$, the target logit follows the
    continuous, monotone fallback $\cos\theta_y - (1 - \cos m)$
    (``podhl.losses.margin.math.monotone_fallback``). Config: ``loss=arc``.

    Not pytorch-metric-learning's ``ArcFaceLoss(num_classes, embedding_size, margin=28.6, scale=64)``:
    here the margin is in **radians** (pml: degrees; 28.6° = 0.5 rad), the feature size is
    ``feat_dim``, the default scale is 30, and the fallback is continuous (pml's
    $\cos\theta - m\sin m$ jumps at $\theta = \pi - m$). A margin of π or more (e.g. degrees passed
    by mistake) is refused.

    Args:
        num_classes: $C$, number of classes (rows of $W$, $C \times d$).
        feat_dim: $d$, feature dimension.
        scale: $s > 0$, scale of the logits. Default 30: podhl's choice, AM-Softmax's value
            (neither POD nor HL states $s$; the ArcFace paper's 64 trains far slower on small sets,
            see ``podhl.losses.margin.head``).
        margin: $m \in [0, \pi)$, additive angular margin in radians. Default 0.5: the ArcFace
            paper's value, POD Table 4 "ArcFace (m = 0.5)".

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated) and ``ce``, the same
            cross-entropy with the margin.
        logits (torch.Tensor): $(B, C)$ scores $s\cos\theta_j$ without margin; argmax = prediction.
    """

    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, margin: float = 0.5) -> None:
        super().__init__(num_classes, feat_dim, scale=scale)
        try:
            self.margin = in_range("margin", margin, 0.0, math.pi, high_open=True)  # m, radians
        except ConfigError:  # e.g. a pytorch-metric-learning user's margin in degrees
            raise ConfigError(
                "margin must be in [0, π) radians, not degrees as pytorch-metric-learning's "
                f"ArcFaceLoss takes (28.6° = 0.5 rad), got {margin!r}"
            ) from None

    def target(self, cos_y: torch.Tensor) -> torch.Tensor:
        phi = angle(cos_y) + self.margin  # θ_y + m
        return monotone_fallback(torch.cos(phi), cos_y, phi, m2=self.margin)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin:g}"
