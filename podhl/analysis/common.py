"""Helpers shared by the post-training analyses (each analysis: ``f(trainer, **params) -> dict``)."""

from __future__ import annotations

import torch

SPLITS = ("train", "test")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


@torch.no_grad()
def predict(trainer, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """The criterion's prediction (argmax of ``criterion.logits``) for CPU ``features``, on CPU."""
    trainer.criterion.eval()
    out = [
        trainer.criterion.logits(features[i : i + batch_size].to(trainer.device)).argmax(1).cpu()
        for i in range(0, features.shape[0], batch_size)
    ]
    return torch.cat(out)


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Percent correct; None for an empty set."""
    return 100.0 * float((pred == labels).double().mean()) if labels.numel() else None
