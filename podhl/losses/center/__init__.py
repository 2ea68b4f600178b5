"""Center-type losses: center loss (Wen et al. 2016) and constrained center loss (CCL, Shi et al. 2021).

``math.py``: per-class sums (shared with Hypersphere Loss), the center penalty and update rules; one file per loss.
"""

from podhl.losses.center.ccl import ConstrainedCenterLoss
from podhl.losses.center.center import CenterLoss

__all__ = ["CenterLoss", "ConstrainedCenterLoss"]
