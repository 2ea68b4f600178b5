"""MML, the HL paper's "multimargin loss" [32]: Li et al.'s AMCM-Softmax (Neural Comput. Appl. 2022), a
combined angular and cosine margin, ``AMCMSoftmaxLoss`` (assumed form: ArcFace paper eq. 4 with
m1 = 1). ``MultiMarginLoss``, its name until 0.2.0, is a deprecated alias (it shadowed
``torch.nn.MultiMarginLoss``, an unrelated multi-class hinge loss) and goes in the next release.
"""

from __future__ import annotations

import math
import warnings

import torch

from podhl.checks import in_range
from podhl.losses.margin.head import MarginHead
from podhl.losses.margin.math import angle, monotone_fallback

DEPRECATED_NAMES = {"MultiMarginLoss": "AMCMSoftmaxLoss"}  # old name → new name, removed in the next release


class AMCMSoftmaxLoss(MarginHead):
    r"""AMCM-Softmax, the HL paper's MML: additive angular margin $m_a$ and cosine margin $m_c$.

    $$L = \mathrm{CE}\big(s\cdot[\cos\theta_j\ (j \ne y);\ \cos(\theta_y + m_a) - m_c\ (j = y)],\ y\big)$$

    The HL paper's "multimargin loss (MML)" [32] is J. Li et al., "Combined angular margin and cosine
    margin softmax loss for music classification based on spectrograms", Neural Comput. Appl. 34(13),
    10337–10353, 2022. Only its abstract could be checked, so **the form and the values are
    podhl's assumptions** (no equation number): the ArcFace paper's combined margin (Deng et al.,
    CVPR 2019, eq. 4) with $m_1 = 1$; if AMCM's angular margin is multiplicative,
    $\cos(m_a\theta_y) - m_c$, use ``loss=cm loss.m2=0`` with $m_1 = m_a$. Past
    $\theta_y = \pi - m_a$ the target logit follows the continuous, monotone fallback
    $\cos\theta_y - (1 + \cos(\pi - m_a)) - m_c$ (``podhl.losses.margin.math.monotone_fallback``).
    Config: ``loss=mml``. Formerly ``MultiMarginLoss`` (deprecated alias, removed in the next release).

    Args:
        num_classes: $C$, number of classes (rows of $W$, $C \times d$).
        feat_dim: $d$, feature dimension.
        scale: $s > 0$, scale of the logits. Default 30: podhl's choice, AM-Softmax's value as for
            am/arc/cm (Li et al.'s $s$ and the HL paper's are unknown).
        angular_margin: $m_a \in [0, \pi)$, additive angular margin in radians. Default 0.3: podhl's
            choice, ArcFace Table 2 "CM1" $m_2$ (Li et al.'s value unknown).
        cosine_margin: $m_c \in [0, 2)$, additive margin on the cosine (unitless). Default 0.2:
            podhl's choice, ArcFace Table 2 "CM1" $m_3$ (Li et al.'s value unknown).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated) and ``ce``, the same
            cross-entropy with the margins.
        logits (torch.Tensor): $(B, C)$ scores $s\cos\theta_j$ without margin; argmax = prediction.
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        scale: float = 30.0,
        angular_margin: float = 0.3,
        cosine_margin: float = 0.2,
    ) -> None:
        super().__init__(num_classes, feat_dim, scale=scale)
        self.angular_margin = in_range("angular_margin", angular_margin, 0.0, math.pi, high_open=True)  # m_a
        self.cosine_margin = in_range("cosine_margin", cosine_margin, 0.0, 2.0, high_open=True)  # m_c

    def target(self, cos_y: torch.Tensor) -> torch.Tensor:
        phi = angle(cos_y) + self.angular_margin  # θ_y + m_a
        return monotone_fallback(
            torch.cos(phi) - self.cosine_margin, cos_y, phi, m2=self.angular_margin, m3=self.cosine_margin
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, angular_margin={self.angular_margin:g}, cosine_margin={self.cosine_margin:g}"


def deprecated_attribute(module: str, name: str) -> type:
    """The class a deprecated name stands for, with a ``DeprecationWarning`` (a module's ``__getattr__``).

    Args:
        module: the module asked, for the messages (``podhl.losses``, ...).
        name: the attribute asked.

    Returns:
        The renamed class (the same object as its new name).

    Raises:
        AttributeError: ``name`` is no deprecated name either.
    """
    if name not in DEPRECATED_NAMES:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new = DEPRECATED_NAMES[name]
    warnings.warn(
        f"{module}.{name} is deprecated and will be removed in the next podhl release: use "
        f"{new} (the same class, renamed so as not to shadow torch.nn.{name}; "
        f"config _target_: podhl.losses.margin.mml.{new})",
        DeprecationWarning,
        stacklevel=3,
    )
    return globals()[new]


def __getattr__(name: str) -> type:
    return deprecated_attribute(__name__, name)
