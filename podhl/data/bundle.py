"""The contract between dataset builders and the trainer."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from podhl.data.gpu_loader import ResidentArrays


@dataclass
class VerificationSet:
    """Image pairs with same/different labels (face verification): pair i is ``images[2i]``, ``images[2i+1]``.

    ``images``: uint8 (2P, C, H, W) (faces: decoded once, kept compact) or float in [0, 1]; the model
    sees (x − mean) / std per channel with x = images / 255 for uint8 (else images as they are): the
    same normalization as the training images. Pair order is kept from the file: 10 consecutive folds of
    it are the protocol's folds (LFW ``pairs.txt``, insightface ``.bin``)."""

    name: str
    images: torch.Tensor
    issame: np.ndarray  # (P,) bool
    mean: Sequence[float]
    std: Sequence[float]
    source: str = ""  # where it came from (a path, "scikit-learn digits", "SYNTHETIC stand-in")

    @property
    def num_pairs(self) -> int:
        return len(self.issame)

    def normalized(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        """Images ``start:stop`` on ``device`` as float, normalized like the training images."""
        x = self.images[start:stop].to(device, non_blocking=True)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        mean = torch.tensor(list(self.mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.tensor(list(self.std), dtype=torch.float32, device=device).view(1, -1, 1, 1)
        return (x - mean) / std


@dataclass
class DataBundle:
    """Train/test datasets of (image tensor C×H×W, int label) and their shape facts."""

    train: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    image_size: int | tuple[int, int]  # side length the model sees (after any resize), or (height, width)
    # Optional in-memory tensors of both splits, for ``trainer.gpu_resident=true`` (small sets only).
    resident_train: ResidentArrays | None = None
    resident_test: ResidentArrays | None = None
    # The train split with the test transforms (no augmentation), for feature passes and analyses;
    # None when the train split has no augmentation anyway.
    train_eval: Dataset | None = None
    # Verification pairs that come with the dataset (an open-set split of it), by name: evaluated by the
    # verification task next to the sets it is configured with.
    verification: dict[str, VerificationSet] = field(default_factory=dict)
    # The validation hold-out of the training split (podhl.data.split; None: no split), un-augmented,
    # its in-memory tensors, and its record for metrics.json (``split``).
    val: Dataset | None = None
    resident_val: ResidentArrays | None = None
    split: dict | None = None


def with_transform(dataset: Dataset, transform) -> Dataset:
    """A shallow copy of a torchvision-style dataset (same samples/files) with another ``transform``."""
    clone = copy.copy(dataset)
    clone.transform = transform
    return clone
