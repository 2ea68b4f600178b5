"""The validation split: a seeded hold-out of the training split (never of test), stratified by class.

``dataset.val_fraction`` of each class's training samples (rounded half up, at least one sample of
every class with ≥ 2 samples, at least one left for training) go to validation; the choice depends on
``dataset.split_seed`` only, never on the run's ``seed``, so every loss and seed of a sweep trains and
validates on the same samples. The permutation is numpy's legacy ``RandomState`` (its stream is frozen
by numpy's compatibility policy: the same indices on every machine and numpy version). Sets without
per-sample class labels (detection) get an unstratified hold-out of the same size. The split is
recorded as the SHA-256 of its validation indices, so two runs can be checked to share it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from podhl.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Indices into the training split: what trains and what validates."""

    train: np.ndarray
    val: np.ndarray
    stratified: bool

    def record(self, fraction: float, seed: int) -> dict[str, Any]:
        """What ``metrics.json`` keeps of the split (``split``)."""
        return {
            "val_fraction": fraction,
            "split_seed": seed,
            "train_size": len(self.train),
            "val_size": len(self.val),
            "stratified": self.stratified,
            "val_indices_sha256": indices_sha256(self.val),
        }


def indices_sha256(indices: np.ndarray) -> str:
    """SHA-256 of the sorted indices as little-endian int64 (the split's identity)."""
    return hashlib.sha256(np.sort(np.asarray(indices, dtype="<i8")).tobytes()).hexdigest()


def check_fraction(fraction: Any) -> float:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(fraction, bool) or not 0.0 <= value < 1.0:
        raise ConfigError(f"dataset.val_fraction must be a number in [0, 1) (0: no validation split), got {fraction!r}")
    return value


def validation_split(num_samples: int, fraction: float, seed: int, labels: Sequence[int] | None = None) -> Split:
    """Hold out ``fraction`` of ``num_samples`` (per class when ``labels`` are given) with ``seed``."""
    rng = np.random.RandomState(int(seed) % 2**32)
    if labels is None:
        order = rng.permutation(num_samples)
        k = min(max(int(np.floor(fraction * num_samples + 0.5)), 1), num_samples - 1)
        val = order[:k]
        stratified = False
    else:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != num_samples:
            raise ValueError(f"{len(labels)} labels for {num_samples} samples")
        held: list[np.ndarray] = []
        for cls in np.unique(labels):  # sorted classes: the draw order is fixed
            members = np.flatnonzero(labels == cls)
            n = len(members)
            k = min(max(int(np.floor(fraction * n + 0.5)), 1 if n >= 2 else 0), n - 1)
            held.append(members[rng.permutation(n)[:k]])
        val = np.concatenate(held) if held else np.zeros(0, dtype=np.int64)
        stratified = True
        if len(val) == 0:  # no class has two samples (a smoke run's stand-in of a many-class set)
            return validation_split(num_samples, fraction, seed, None)
    val = np.sort(val.astype(np.int64))
    keep = np.ones(num_samples, dtype=bool)
    keep[val] = False
    if len(val) == 0:
        raise ConfigError(
            f"dataset.val_fraction={fraction} holds out no sample of the {num_samples} training samples; "
            f"raise it or set dataset.val_fraction=0"
        )
    return Split(np.flatnonzero(keep).astype(np.int64), val, stratified)


def labels_of(dataset: Dataset) -> list[int] | None:
    """Per-sample class labels without reading images (``targets`` or ``labels``), or None."""
    for name in ("targets", "labels"):
        values = getattr(dataset, name, None)
        if values is None:
            continue
        if isinstance(values, torch.Tensor) and values.dim() == 1:
            return values.tolist()
        if isinstance(values, (list, tuple, np.ndarray)) and len(values) and np.isscalar(values[0]):
            return [int(v) for v in values]
    return None


class SplitSubset(Subset):
    """A :class:`~torch.utils.data.Subset` that keeps ``targets`` (class checks, stratification, samplers)."""

    def __init__(self, dataset: Dataset, indices: np.ndarray, labels: Sequence[int] | None = None) -> None:
        super().__init__(dataset, [int(i) for i in indices])
        if labels is not None:
            self.targets = [int(labels[i]) for i in self.indices]
