"""AM-Softmax / CosFace: additive cosine margin on a normalized classifier, ``AMSoftmaxLoss``
(Wang et al., IEEE SPL 2018; CosFace's LMCL, Wang et al., CVPR 2018, eq. 4)."""

from __future__ import annotations

import torch

from podhl.checks import in_range
from podhl.losses.margin.head import MarginHead


class AMSoftmaxLoss(MarginHead):
    r"""AM-Softmax / CosFace: additive cosine margin $m$ on the target logit.

    AM-Softmax (Wang, Cheng, Liu & Liu, IEEE SPL 2018, $\psi(\theta) = \cos\theta - m$) and CosFace's
    LMCL (Wang et al., CVPR 2018, eq. 4), the same formula:

    $$L = \mathrm{CE}\big(s\cdot[\cos\theta_j\ (j \ne y);\ \cos\theta_y - m\ (j = y)],\ y\big)$$

    with $\cos\theta_j$ between the feature and the L2-normalized class weight $W_j$. No angle is
    needed, so there is no fallback region. Config: ``loss=am`` (CosFace's $s = 64$:
    ``loss.scale=64``).

    Args:
        num_classes: $C$, number of classes (rows of $W$, $C \times d$).
        feat_dim: $d$, feature dimension.
        scale: $s > 0$, scale of the logits. Default 30: happynear/AMSoftmax
            ``prototxt/face_train_test.prototxt`` @1dc91fd (CosFace uses 64).
        margin: $m \in [0, 2)$, additive margin on the cosine (unitless). Default 0.35: POD Table 4
            "AM-Softmax (m = 0.35)", the same prototxt.

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated) and ``ce``, the same
            cross-entropy with the margin.
        logits (torch.Tensor): $(B, C)$ scores $s\cos\theta_j$ without margin; argmax = prediction.
    """

    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, margin: float = 0.35) -> None:
        super().__init__(num_classes, feat_dim, scale=scale)
        self.margin = in_range("margin", margin, 0.0, 2.0, high_open=True)  # m, a cosine

    def target(self, cos_y: torch.Tensor) -> torch.Tensor:
        return cos_y - self.margin  # cos θ_y − m

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin:g}"
