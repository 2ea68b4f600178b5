"""POD family (Zhu & Zu, POD Loss; PEDCC-Loss): softmax-free losses on a frozen PEDCC classifier.

``math.py``: the equations (cosine, NaC, SC, PEDCC-AM/MSE); ``head.py``: the PEDCC classifier and cosine
argmax; one file per loss: ``cosine.py``, ``nac.py``, ``pod.py``, ``pedcc_loss.py``.
"""

from podhl.losses.pod.cosine import CosineLoss
from podhl.losses.pod.head import PEDCCCriterion
from podhl.losses.pod.nac import NaCLoss
from podhl.losses.pod.pedcc_loss import PEDCCLoss
from podhl.losses.pod.pod import PODLoss

__all__ = ["PEDCCCriterion", "CosineLoss", "NaCLoss", "PODLoss", "PEDCCLoss"]
