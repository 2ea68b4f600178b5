"""Hypersphere Loss (HL, Wang et al., IEEE TII 2024).

``loss.py``: :class:`HypersphereLoss`; ``math.py``: eqs. 9–17 and the feature-sphere radius.
"""

from podhl.losses.hypersphere.loss import HypersphereLoss

__all__ = ["HypersphereLoss"]
