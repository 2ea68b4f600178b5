"""Center bookkeeping shared by center-based losses (center loss, CCL, HL): per-class sums, vectorized."""

from __future__ import annotations

import torch


def class_sums(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class feature sums (C, d) and counts (C,) via ``index_add_`` (no loop, no B×C×d tensor)."""
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.zeros(num_classes, dtype=features.dtype, device=features.device)
    counts.index_add_(0, labels, torch.ones_like(labels, dtype=features.dtype))  # (bincount syncs on CUDA)
    return sums, counts
