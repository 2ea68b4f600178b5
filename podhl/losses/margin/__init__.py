"""Normalized-classifier margin heads: AM-Softmax/CosFace, ArcFace, combined margin, MML (AMCM-Softmax),
A-Softmax (SphereFace), RegularFace (ER) and MagFace.

``math.py``: clamped angle, monotone fallback, SphereFace ψ, MagFace m(a)/g(a), RegularFace L_r;
``lean_ce.py``: the margin softmax cross-entropy every head computes its loss with (one (B, C) buffer);
``head.py``: the normalized classifier; one file per loss, each computing its own target logit.
"""

from podhl.losses.margin.am import AMSoftmaxLoss
from podhl.losses.margin.arc import ArcFaceLoss
from podhl.losses.margin.asl import ASoftmaxLoss
from podhl.losses.margin.cm import CombinedMarginLoss
from podhl.losses.margin.er import ExclusiveRegularizationLoss
from podhl.losses.margin.head import MarginHead, NormalizedClassifier
from podhl.losses.margin.magface import MagFaceLoss
from podhl.losses.margin.mml import AMCMSoftmaxLoss
from podhl.losses.margin.mml import deprecated_attribute as _deprecated_attribute

__all__ = [
    "NormalizedClassifier",
    "MarginHead",
    "AMSoftmaxLoss",
    "ArcFaceLoss",
    "CombinedMarginLoss",
    "AMCMSoftmaxLoss",
    "ASoftmaxLoss",
    "ExclusiveRegularizationLoss",
    "MagFaceLoss",
]


def __getattr__(name: str) -> type:
    return _deprecated_attribute(__name__, name)  # MultiMarginLoss → AMCMSoftmaxLoss, with a DeprecationWarning
