"""The loss zoo: one module per loss, each a :class:`Criterion` (see ``base.py``).

Configs select losses by ``_target_`` (``podhl/conf/loss/<name>.yaml``); the names below are re-exported
for use from Python.
"""

from podhl.losses.base import Criterion
from podhl.losses.softmax import SoftmaxLoss

__all__ = ["Criterion", "SoftmaxLoss"]
