"""Shared by the analyses. Each analysis is ``f(source, **params) -> dict`` where ``source`` is a
feature source (``podhl.engine.features.FeatureSource``): ``source.features(split, layer)``,
``source.predict(features)``, ``source.num_classes``, ``source.centroids``, ``source.run_dir``."""

from __future__ import annotations

import torch


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Percent correct; None for an empty set."""
    return 100.0 * float((pred == labels).double().mean()) if labels.numel() else None
