"""The contract between dataset builders and the trainer."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch.utils.data import Dataset

from podhl.data.gpu_loader import ResidentArrays


@dataclass
class DataBundle:
    """Train/test datasets of (image tensor C×H×W, int label) and their shape facts."""

    train: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    image_size: int  # side length the model sees (after any resize)
    # Optional in-memory tensors of both splits, for ``trainer.gpu_resident=true`` (small sets only).
    resident_train: ResidentArrays | None = None
    resident_test: ResidentArrays | None = None
    # The train split with the test transforms (no augmentation), for feature passes and analyses;
    # None when the train split has no augmentation anyway.
    train_eval: Dataset | None = None


def with_transform(dataset: Dataset, transform) -> Dataset:
    """A shallow copy of a torchvision-style dataset (same samples/files) with another ``transform``."""
    clone = copy.copy(dataset)
    clone.transform = transform
    return clone
