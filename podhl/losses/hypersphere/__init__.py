"""Hypersphere Loss (HL, Wang et al., IEEE TII 2024).

``loss.py``: ``HypersphereLoss``; ``math.py``: eqs. 9–17 and the feature-sphere radius;
``centers.py``: the centers and N_c; ``updates.py``: the center-update strategies (per mini-batch
EWMA with a period, per-epoch EWMA, whole training set); ``switches.py``: the authors'-code switches;
``detection_code.py``: HL as the authors' Faster R-CNN code runs it (``OfficialDetectionHL``).
"""

from podhl.losses.hypersphere.detection_code import OfficialDetectionHL
from podhl.losses.hypersphere.loss import HypersphereLoss
from podhl.losses.hypersphere.switches import OfficialSwitches
from podhl.losses.hypersphere.updates import BatchEWMA, CenterUpdate, EpochEWMA, WholeTrainingSet

__all__ = [
    "HypersphereLoss",
    "OfficialDetectionHL",
    "OfficialSwitches",
    "CenterUpdate",
    "BatchEWMA",
    "EpochEWMA",
    "WholeTrainingSet",
]
