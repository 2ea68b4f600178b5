"""SYNTHETIC random images for speed benchmarks only: labels carry no signal about the pixels.

The GPU-resident path applies CIFAR-style pad-``pad`` crops and flips (so it costs what CIFAR's does).

Never report accuracy on it. Deterministic for a seed; uint8 images like a real decoded set.
"""

from __future__ import annotations

import torch

from podhl.data.bundle import DataBundle
from podhl.data.tensor_dataset import TensorImageDataset


def build(
    num_classes: int = 10,
    image_size: int = 32,
    in_chans: int = 3,
    train_size: int = 50_000,
    test_size: int = 10_000,
    seed: int = 0,
    pad: int = 4,
    flip: bool = True,
) -> DataBundle:
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> TensorImageDataset:
        images = torch.randint(0, 256, (n, in_chans, image_size, image_size), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, num_classes, (n,), generator=g)
        return TensorImageDataset(images, labels, [0.5] * in_chans, [0.25] * in_chans)

    train, test = split(train_size), split(test_size)
    return DataBundle(
        train,
        test,
        num_classes=num_classes,
        in_chans=in_chans,
        image_size=image_size,
        resident_train=train.resident(pad=pad, flip=flip),
        resident_test=test.resident(),
    )
