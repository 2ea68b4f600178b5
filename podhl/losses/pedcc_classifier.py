"""Shared base of the POD family: the frozen PEDCC classifier and cosine-argmax prediction.

The PEDCC (``podhl.pedcc.generate_pedcc``; POD §2.1) replaces the last linear layer (FC2 in POD
Fig. 1). It is a buffer: no gradient, never in the optimizer, saved in every checkpoint.
Prediction is the cosine argmax of eq. 21–24: argmax_i x·p̃_i = argmax_i cos θ_{x, p̃_i}.
"""

from __future__ import annotations

import torch

from podhl.losses.base import Criterion
from podhl.losses.functional.pod import cosine_logits
from podhl.pedcc import METHODS, generate_pedcc


class PEDCCCriterion(Criterion):
    """Owns ``pedcc`` (k, n) unit rows. ``pedcc_seed``/``pedcc_method`` choose the centroids."""

    def __init__(self, num_classes: int, feat_dim: int, pedcc_seed: int = 0, pedcc_method: str = "auto") -> None:
        super().__init__(num_classes, feat_dim)
        if pedcc_method not in METHODS:
            raise ValueError(f"pedcc_method must be one of {METHODS}, got {pedcc_method!r}")
        self.register_buffer("pedcc", generate_pedcc(num_classes, feat_dim, seed=int(pedcc_seed), method=pedcc_method))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return cosine_logits(features.float(), self.pedcc)
