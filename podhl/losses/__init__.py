"""The loss zoo, one package per family, each with ``math.py`` (the equations, pure functions) and one
file per loss (a ``Criterion``, see ``base.py``):

* ``pod/``: Cosine, NaC, POD Loss, PEDCC-Loss (frozen PEDCC classifier);
* ``margin/``: AM-Softmax, ArcFace, combined margin, MML (AMCM-Softmax), A-Softmax, RegularFace, MagFace;
* ``center/``: center loss, constrained center loss;
* ``hypersphere/``: Hypersphere Loss and its center-update strategies;
* ``linear/``: softmax, COT, HML.

Configs select a loss by ``_target_`` (``podhl/conf/loss/<name>.yaml``); in a plain PyTorch loop,
``from podhl.losses import PODLoss, HypersphereLoss``. Importing this package loads only the ground
floor (``podhl.errors``, ``checks``, ``distributed``, ``pedcc``) besides torch, numpy and scipy.
"""

from podhl.losses.base import Criterion
from podhl.losses.center import CenterLoss, ConstrainedCenterLoss
from podhl.losses.hypersphere import (
    BatchEWMA,
    CenterUpdate,
    EpochEWMA,
    HypersphereLoss,
    OfficialDetectionHL,
    OfficialSwitches,
    WholeTrainingSet,
)
from podhl.losses.linear import COTLoss, HardMiningLoss, SoftmaxLoss
from podhl.losses.margin import (
    AMCMSoftmaxLoss,
    AMSoftmaxLoss,
    ArcFaceLoss,
    ASoftmaxLoss,
    CombinedMarginLoss,
    ExclusiveRegularizationLoss,
    MagFaceLoss,
)
from podhl.losses.margin.mml import deprecated_attribute as _deprecated_attribute
from podhl.losses.pod import CosineLoss, NaCLoss, PEDCCLoss, PODLoss

__all__ = [
    "Criterion",
    "CosineLoss",
    "NaCLoss",
    "PODLoss",
    "PEDCCLoss",
    "AMSoftmaxLoss",
    "ArcFaceLoss",
    "CombinedMarginLoss",
    "AMCMSoftmaxLoss",
    "ASoftmaxLoss",
    "ExclusiveRegularizationLoss",
    "MagFaceLoss",
    "CenterLoss",
    "ConstrainedCenterLoss",
    "HypersphereLoss",
    "OfficialDetectionHL",
    "OfficialSwitches",
    "CenterUpdate",
    "BatchEWMA",
    "EpochEWMA",
    "WholeTrainingSet",
    "SoftmaxLoss",
    "COTLoss",
    "HardMiningLoss",
]


def __getattr__(name: str) -> type:
    return _deprecated_attribute(__name__, name)  # MultiMarginLoss → AMCMSoftmaxLoss, with a DeprecationWarning
