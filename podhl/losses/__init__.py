"""The loss zoo: one module per loss, each a :class:`Criterion` (see ``base.py``)."""

from podhl.losses.base import Criterion
from podhl.losses.softmax import SoftmaxLoss

__all__ = ["Criterion", "SoftmaxLoss"]
