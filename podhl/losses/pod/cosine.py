"""Cosine Loss (POD §3.1.1, eq. 9–11): mean (1 − cos θ_y)² to the frozen PEDCC. Logs ``cosine``."""

from __future__ import annotations

import torch

from podhl.losses.pod.head import PEDCCCriterion
from podhl.losses.pod.math import cosine_loss


class CosineLoss(PEDCCCriterion):
    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        loss = cosine_loss(features.float(), labels, self.unit_pedcc, centroids_normalized=True)
        return {"loss": loss, "cosine": loss}
