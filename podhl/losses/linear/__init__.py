"""Linear-classifier cross-entropy losses: softmax, COT (complement objective) and HML (hard mining).

``math.py``: complement entropy and the hard-mining loss; ``head.py``: the linear classifier W x + b
(also under center loss, CCL and HL); one file per loss.
"""

from podhl.losses.linear.cot import COTLoss
from podhl.losses.linear.head import LinearClassifier
from podhl.losses.linear.hml import HardMiningLoss
from podhl.losses.linear.softmax import SoftmaxLoss

__all__ = ["LinearClassifier", "SoftmaxLoss", "COTLoss", "HardMiningLoss"]
