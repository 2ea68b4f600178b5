"""scikit-learn's bundled 8×8 handwritten digits (1,797 real images, 10 classes, no download).

Split: stratified, ``test_fraction`` of each class held out with a fixed ``split_seed``.
Pixels are 0..16 in the source; they are scaled to [0, 1] and normalized with the train mean/std.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from podhl.data.bundle import DataBundle
from podhl.data.tensor_dataset import TensorImageDataset


def build(test_fraction: float = 0.2, split_seed: int = 0, resize: int | None = None) -> DataBundle:
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    labels = torch.tensor(digits.target)
    idx_train, idx_test = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=test_fraction, random_state=split_seed, stratify=labels.numpy()
    )
    if resize:
        images = torch.nn.functional.interpolate(images, size=(resize, resize), mode="bilinear", align_corners=False)
    train_images = images[idx_train]
    mean, std = [float(train_images.mean())], [float(train_images.std())]
    train = TensorImageDataset(train_images, labels[idx_train], mean, std)
    test = TensorImageDataset(images[idx_test], labels[idx_test], mean, std)
    return DataBundle(
        train=train, test=test, num_classes=10, in_chans=1, image_size=images.shape[-1],
        resident_train=train.resident(), resident_test=test.resident(),
    )
