"""Cosine Loss (POD §3.1.1, eq. 9–11): mean (1 − cos θ_y)² to the frozen PEDCC. Logs ``cosine``."""

from __future__ import annotations

import torch

from podhl.losses.functional.pod import cosine_loss
from podhl.losses.pedcc_classifier import PEDCCCriterion


class CosineLoss(PEDCCCriterion):
    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        loss = cosine_loss(features.float(), labels, self.pedcc)
        return {"loss": loss, "cosine": loss}
